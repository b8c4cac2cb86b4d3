/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Control protocol fuzzer: the real event loop, control server and manager
 * (with no VMs, so nothing is executed) behind one end of a socketpair. The
 * first byte sets the chunk size, so requests arrive in pieces and force
 * partial reads; every reply must be one JSON object per line. */
#include <poll.h>
#include <stdint.h>
#include <sys/socket.h>

#include "control.h"
#include "host.h"
#include "loop.h"
#include "manager.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct loop *loop;
static struct control *control;

static int fake_reload(void *userdata, json_t **ret_summary, json_t **ret_errors)
{
	(void)userdata;
	if (ret_errors)
		*ret_errors = json_pack("[s]", "x.json: name: is required");
	(void)ret_summary;
	return -EINVAL;
}

static void setup(void)
{
	static struct host_config *host;
	static struct virtiofsd_caps caps;
	struct schema_errors errors = {};
	struct vm_options opts = { .caps = &caps, .qemu = "/bin/false", .virtiofsd = "/bin/false" };
	struct manager *m;

	if (loop)
		return;
	if (loop_new(&loop) < 0 ||
	    host_config_parse_buffer("{\"run_dir\": \"/nonexistent/vmd-fuzz\"}", 36, &host, &errors) < 0 ||
	    manager_new(loop, host, &opts, &m) < 0 || control_new_unbound(loop, m, fake_reload, NULL, &control) < 0)
		abort();
}

static void check_replies(char *buf, size_t len)
{
	char *p = buf, *end = buf + len;

	while (p < end) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		json_t *j;

		if (!nl)
			abort(); /* every reply ends with a newline */
		j = json_loadb(p, (size_t)(nl - p), 0, NULL);
		if (!json_is_object(j))
			abort();
		json_decref(j);
		p = nl + 1;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char out[1 << 20];
	size_t chunk, off = 1, got = 0;
	int sv[2];

	if (size < 1)
		return 0;
	setup();
	chunk = (size_t)data[0] % 64 + 1;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
		abort();
	if (control_add_client(control, sv[0]) < 0)
		abort();
	while (off < size) {
		size_t n = size - off < chunk ? size - off : chunk;
		ssize_t w = send(sv[1], data + off, n, MSG_NOSIGNAL);

		if (w > 0)
			off += (size_t)w;
		loop_iterate(loop, 0);
		/* Drain as we go, as a client would. */
		for (ssize_t r; (r = recv(sv[1], out + got, sizeof(out) - got - 1, 0)) > 0;)
			got += (size_t)r;
		if (w < 0 && errno != EAGAIN)
			break;
		if (got >= sizeof(out) - 1)
			break;
	}
	shutdown(sv[1], SHUT_WR);
	for (int i = 0; i < 4; i++) {
		loop_iterate(loop, 0);
		for (ssize_t r; (r = recv(sv[1], out + got, sizeof(out) - got - 1, 0)) > 0;)
			got += (size_t)r;
	}
	close(sv[1]);
	/* Let the server notice and free the client. */
	for (int i = 0; i < 4; i++)
		loop_iterate(loop, 0);
	if (got < sizeof(out) - 1)
		check_replies(out, got);
	return 0;
}
