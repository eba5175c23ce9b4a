/* cli.h -- what main.c and repl.c share.  Not part of libparx. */
#ifndef PX_CLI_H
#define PX_CLI_H

#include <stdio.h>

#include <editline/readline.h> /* the types only: editline.c opens libedit */

#include "parx.h"

/* report.c: print the version line ("parx 0.1.0 (LuaJIT ..., libuv ...)") to f. */
void px_cli_version(FILE *f);

/* Report a failed parx_* result on stderr as "parx: message". */
void px_cli_report(parx_runtime *rt, int result);

/* repl.c: run the interactive loop until the user leaves (Ctrl-D, end of input) or
 * the code calls os.exit.  Reads with libedit when standard input is a
 * terminal, plain lines otherwise.  Returns -1 when the user left, or the
 * exit status that os.exit asked for. */
int px_repl_run(parx_runtime *rt);

/* Load the REPL's Lua half now, before -e, -l and the script run: its
 * module takes the standard functions it uses when it loads, and user code
 * may replace them.  0, or -1 with the reason on stderr. */
int px_repl_load(parx_runtime *rt);

/* editline.c: what repl.c uses of libedit, looked up when a terminal
 * first needs it (functions, and pointers to the variables). */
#define PX_EDITLINE_SYMS(X)                                                     \
  X(callback_handler_install, "rl_callback_handler_install")                   \
  X(callback_handler_remove, "rl_callback_handler_remove")                     \
  X(callback_read_char, "rl_callback_read_char")                               \
  X(forced_update_display, "rl_forced_update_display")                         \
  X(replace_line, "rl_replace_line")                                           \
  X(completion_matches, "rl_completion_matches")                               \
  X(add_history, "add_history")                                                \
  X(write_history, "write_history")                                            \
  X(read_history, "read_history")                                              \
  X(using_history, "using_history")                                            \
  X(stifle_history, "stifle_history")                                          \
  X(readline_name, "rl_readline_name")                                         \
  X(basic_word_break_characters, "rl_basic_word_break_characters")             \
  X(completer_word_break_characters, "rl_completer_word_break_characters")     \
  X(attempted_completion_function, "rl_attempted_completion_function")         \
  X(attempted_completion_over, "rl_attempted_completion_over")                 \
  X(completion_append_character, "rl_completion_append_character")
typedef struct px_editline {
  __typeof__(&rl_callback_handler_install) callback_handler_install;
  __typeof__(&rl_callback_handler_remove) callback_handler_remove;
  __typeof__(&rl_callback_read_char) callback_read_char;
  __typeof__(&rl_forced_update_display) forced_update_display;
  __typeof__(&rl_replace_line) replace_line;
  __typeof__(&rl_completion_matches) completion_matches;
  __typeof__(&add_history) add_history;
  __typeof__(&write_history) write_history;
  __typeof__(&read_history) read_history;
  __typeof__(&using_history) using_history;
  __typeof__(&stifle_history) stifle_history;
  __typeof__(rl_readline_name) *readline_name;
  __typeof__(rl_basic_word_break_characters) *basic_word_break_characters;
  __typeof__(rl_completer_word_break_characters) *completer_word_break_characters;
  __typeof__(rl_attempted_completion_function) *attempted_completion_function;
  __typeof__(rl_attempted_completion_over) *attempted_completion_over;
  __typeof__(rl_completion_append_character) *completion_append_character;
} px_editline;
/* libedit, opened (once per process: the REPL's); NULL with the reason in
 * err when it cannot be. */
const px_editline *px_editline_open(char *err, size_t errlen);

/* exit.c: catch SIGINT, SIGTERM and SIGHUP (those at their default) so
 * that stdout and stderr are flushed before the process dies by them. */
void px_cli_signals_init(void);
/* Close the runtime on the way out with status: waits briefly for the
 * workers, and when some are still busy (a JIT-compiled loop) flushes
 * every stream and ends the process with _exit(status) at once.  Returns
 * only when everything was closed. */
void px_cli_exit(parx_runtime *rt, int status);

#endif
