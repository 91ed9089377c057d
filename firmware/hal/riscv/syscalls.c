/*
 * The C library hook a bare-metal image may pull in. picolibc's exit() ends in
 * _exit. There is no heap: the linker script gives picolibc's sbrk an empty
 * one (__heap_start == __heap_end), so a malloc() in a kernel fails loudly
 * instead of growing into the stack.
 */
#include "../hal.h"

void _exit(int code)
{
    hal_exit(code);
}
