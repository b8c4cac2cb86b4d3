/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The terminal of an interactive console (vmd console, vmd run): raw mode,
 * put back on every way out, and the escape key that detaches. */

#include "util.h"

/* The default escape: Ctrl-], as virsh console and telnet. */
#define TERM_ESCAPE_DEFAULT 0x1d

/* Puts the terminal on fd into raw mode (no echo, no line editing, no
 * signals from keys: Ctrl-C goes to the guest). Its previous mode is put
 * back by term_restore(), at exit(), and by a SIGTERM, SIGHUP, SIGQUIT or
 * SIGINT that kills us: those are caught, restore, and are raised again.
 * -ENOTTY if fd is not a terminal. */
int term_raw(int fd);
void term_restore(void);

/* "^]", "^A".."^Z", "^\", "^^", "^_" or "ctrl-X": the control byte. -EINVAL
 * for anything else. */
int term_parse_escape(const char *s, int *ret);
/* "^]" for 0x1d. buf: at least 3 bytes. */
void term_format_escape(int c, char buf[3]);
