//! The chat template: how a conversation is written out as one prompt text.
//!
//! A GGUF carries its template as Jinja source (`tokenizer.chat_template`). This crate does not embed
//! a Jinja engine: it knows the templates it can render, each by its exact source text, and renders
//! them with the same semantics in Rust. A file whose template is not one of them is refused when
//! the tokenizer is built ([`super::TokenizerError::UnsupportedChatTemplate`]), so another model's
//! template is never rendered wrongly.

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatMessage {
    /// Who speaks: `system`, `user` or `assistant` (any text is accepted and written as it is).
    pub role: String,
    /// What they say (written as it is: the template does no escaping or trimming).
    pub content: String,
}

impl ChatMessage {
    /// A message from `role` saying `content`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }

    /// A `system` message.
    pub fn system(content: impl Into<String>) -> ChatMessage {
        ChatMessage::new("system", content)
    }

    /// A `user` message.
    pub fn user(content: impl Into<String>) -> ChatMessage {
        ChatMessage::new("user", content)
    }

    /// An `assistant` message.
    pub fn assistant(content: impl Into<String>) -> ChatMessage {
        ChatMessage::new("assistant", content)
    }
}

/// The chat templates this crate renders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChatTemplate {
    /// SmolLM2-Instruct's ChatML template ([`SMOLLM2_CHATML`]).
    SmolLm2ChatMl,
}

/// The Jinja source of SmolLM2-Instruct's template, byte for byte as its GGUF files carry it.
///
/// It renders, for each message, `<|im_start|>{role}\n{content}<|im_end|>\n`; before the first one,
/// when the conversation does not open with a `system` message, the default system message
/// `You are a helpful AI assistant named SmolLM, trained by Hugging Face`; and, with
/// `add_generation_prompt`, a final `<|im_start|>assistant\n`. An empty conversation renders nothing
/// but that final line (the loop that writes the default system message does not run).
pub const SMOLLM2_CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != \
'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging \
Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + \
'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// SmolLM2's default system message (written when the conversation does not start with one).
const SMOLLM2_DEFAULT_SYSTEM: &str = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

impl ChatTemplate {
    /// The template whose Jinja source is exactly `source`, if this crate renders it.
    pub fn from_source(source: &str) -> Option<ChatTemplate> {
        (source == SMOLLM2_CHATML).then_some(ChatTemplate::SmolLm2ChatMl)
    }

    /// The Jinja source this template renders.
    pub fn source(self) -> &'static str {
        match self {
            ChatTemplate::SmolLm2ChatMl => SMOLLM2_CHATML,
        }
    }

    /// Renders `messages` as the Jinja template would (with `add_generation_prompt` as given).
    pub fn render(self, messages: &[ChatMessage], add_generation_prompt: bool) -> String {
        match self {
            ChatTemplate::SmolLm2ChatMl => {
                let mut out = String::new();
                let mut turn = |role: &str, content: &str| {
                    out.push_str("<|im_start|>");
                    out.push_str(role);
                    out.push('\n');
                    out.push_str(content);
                    out.push_str("<|im_end|>\n");
                };
                if messages.first().is_some_and(|m| m.role != "system") {
                    turn("system", SMOLLM2_DEFAULT_SYSTEM);
                }
                for m in messages {
                    turn(&m.role, &m.content);
                }
                if add_generation_prompt {
                    out.push_str("<|im_start|>assistant\n");
                }
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_chatml_with_the_default_system_message() {
        let t = ChatTemplate::SmolLm2ChatMl;
        assert_eq!(
            t.render(&[ChatMessage::user("hi")], true),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging \
             Face<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            t.render(&[ChatMessage::system("S"), ChatMessage::user("U")], false),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n"
        );
        assert_eq!(t.render(&[], true), "<|im_start|>assistant\n");
        assert_eq!(t.render(&[], false), "");
        assert_eq!(ChatTemplate::from_source(SMOLLM2_CHATML), Some(t));
        assert_eq!(ChatTemplate::from_source("{{ messages }}"), None);
    }
}
