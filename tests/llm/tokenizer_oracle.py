#!/usr/bin/env python3
"""The reference tokenizer for cu-llm's tests: llama.cpp's, through llama-cpp-python, on the GGUF itself.

Reads one JSON document (from the file named by the first argument, or from standard input):

    {"gguf": "<path to the .gguf>",
     "texts": ["...", ...],                      # encoded with parse_special=true, no bos
     "texts_plain": ["...", ...],                # optional: encoded with parse_special=false
     "decode": [[id, ...], ...],                 # optional: detokenized (llama_token_to_piece, special=true)
     "chats": [{"messages": [{"role": .., "content": ..}, ..], "add_generation_prompt": bool}, ..]}

and prints one JSON document:

    {"oracle": "llama-cpp-python <version>", "jinja2": "<version>",
     "ids": [[...], ...],                        # one list per text
     "ids_plain": [[...], ...],                  # one list per texts_plain entry
     "decoded_hex": ["..", ...],                 # llama.cpp's detokenized bytes, hex, one per "decode" entry
     "chat_template": "<tokenizer.chat_template as the file has it>",
     "chats": ["<rendered prompt>", ...]}

Why llama.cpp and not transformers: transformers' GGUF loader needs torch, and it builds this file's
tokenizer without the `smollm` pre-tokeniser's digit splitting (it uses its Llama-3 ByteLevel path), so
it would not be this model's tokenizer. llama.cpp is the reference the model is checked against.

The chat template is rendered with Jinja2 the way transformers' `apply_chat_template` does
(`ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)` with the loop-controls
extension), from the template text the GGUF carries.

Install (pinned): pip install llama-cpp-python==0.3.36 Jinja2==3.1.6
"""

import json
import sys


def detokenize(model, ids) -> bytes:
    """llama.cpp's `llama_token_to_piece(.., lstrip=0, special=true)` for each id, concatenated.

    Called directly rather than through `Llama.detokenize`, which uses a 32-byte buffer per token (and so
    truncates SmolLM2's long white-space tokens) and drops a leading space after a bos token.
    """
    import ctypes

    import llama_cpp

    vocab = model._model.vocab
    out = bytearray()
    for tok in ids:
        size = 64
        while True:
            buf = (ctypes.c_char * size)()
            n = llama_cpp.llama_token_to_piece(vocab, llama_cpp.llama_token(tok), buf, size, 0, True)
            if n < 0:
                size = -n
                continue
            out += bytes(buf[:n])
            break
    return bytes(out)


def main() -> int:
    if len(sys.argv) > 1:
        with open(sys.argv[1], "rb") as f:
            req = json.loads(f.read().decode("utf-8"))
    else:
        req = json.loads(sys.stdin.buffer.read().decode("utf-8"))

    import jinja2
    import jinja2.ext
    import jinja2.sandbox
    import llama_cpp
    from llama_cpp import Llama

    model = Llama(model_path=req["gguf"], vocab_only=True, verbose=False)
    ids = [model.tokenize(t.encode("utf-8"), add_bos=False, special=True) for t in req.get("texts", [])]
    ids_plain = [
        model.tokenize(t.encode("utf-8"), add_bos=False, special=False) for t in req.get("texts_plain", [])
    ]
    decoded = [detokenize(model, seq).hex() for seq in req.get("decode", [])]

    template_src = model.metadata.get("tokenizer.chat_template")
    chats = []
    if req.get("chats"):
        if template_src is None:
            raise SystemExit("the GGUF has no tokenizer.chat_template")
        env = jinja2.sandbox.ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
        )
        template = env.from_string(template_src)
        for chat in req["chats"]:
            chats.append(
                template.render(
                    messages=chat["messages"], add_generation_prompt=bool(chat["add_generation_prompt"])
                )
            )

    out = {
        "oracle": "llama-cpp-python " + llama_cpp.__version__,
        "jinja2": jinja2.__version__,
        "ids": ids,
        "ids_plain": ids_plain,
        "decoded_hex": decoded,
        "chat_template": template_src,
        "chats": chats,
    }
    sys.stdout.write(json.dumps(out, ensure_ascii=True))
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
