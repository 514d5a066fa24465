# The Emscripten 3.1.59 stack exports the emscripten4 glue calls (as emscripten's stack_ops.S has them).
.globaltype __stack_pointer, i32

.globl emscripten_stack_get_current
.export_name emscripten_stack_get_current, emscripten_stack_get_current
emscripten_stack_get_current:
  .functype emscripten_stack_get_current () -> (i32)
  global.get __stack_pointer
  end_function

.globl _emscripten_stack_restore
.export_name _emscripten_stack_restore, _emscripten_stack_restore
_emscripten_stack_restore:
  .functype _emscripten_stack_restore (i32) -> ()
  local.get 0
  global.set __stack_pointer
  end_function

.globl _emscripten_stack_alloc
.export_name _emscripten_stack_alloc, _emscripten_stack_alloc
_emscripten_stack_alloc:
  .functype _emscripten_stack_alloc (i32) -> (i32)
  .local i32
  global.get __stack_pointer
  local.get 0
  i32.sub
  i32.const -16
  i32.and
  local.tee 1
  global.set __stack_pointer
  local.get 1
  end_function
