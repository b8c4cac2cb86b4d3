/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>

#include "vmstate.h"

void vmstate_clear(struct vmstate *s)
{
	def_free(s->def);
	free(s->shares);
	free(s->instance);
	free(s->last_exit);
	*s = (struct vmstate){};
}

/* Shown by "vmd status": one line of text, of a sane length. */
static bool last_exit_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > VMSTATE_LAST_EXIT_MAX)
		return false;
	for (const unsigned char *c = (const unsigned char *)s; *c; c++)
		if (*c < 0x20 || *c == 0x7f)
			return false;
	return true;
}

static json_t *proc_json(const struct proc_id *id)
{
	return json_pack("{s:i, s:I}", "pid", (int)id->pid, "start_time", (json_int_t)id->start_time);
}

char *vmstate_format(const struct vmstate *s)
{
	_cleanup_(json_decrefp) json_t *j = NULL;
	json_t *shares;

	shares = json_array();
	for (size_t i = 0; shares && i < s->n_shares; i++)
		json_array_append_new(shares, proc_json(&s->shares[i]));
	j = json_pack("{s:i, s:o, s:o, s:I, s:I, s:b, s:i}", "version", 1, "definition", def_to_json(s->def),
		      "shares", shares, "started_at", (json_int_t)s->started_at, "boot_usec",
		      (json_int_t)s->boot_usec, "ready", s->ready, "restarts", (int)s->restarts);
	if (!j)
		return NULL;
	if (s->qemu.pid > 0 && json_object_set_new(j, "qemu", proc_json(&s->qemu)) < 0)
		return NULL;
	if (s->instance && json_object_set_new(j, "instance", json_string(s->instance)) < 0)
		return NULL;
	/* One that the next daemon would refuse is not worth its adoption. */
	if (s->last_exit && last_exit_valid(s->last_exit) &&
	    json_object_set_new(j, "last_exit", json_string(s->last_exit)) < 0)
		return NULL;
	return json_dumps(j, JSON_COMPACT);
}

int vmstate_write(const char *dir, const struct vmstate *s)
{
	_cleanup_free_ char *path = path_join(dir, "state.json"), *text = NULL;

	if (!path)
		return -ENOMEM;
	text = vmstate_format(s);
	if (!text)
		return -ENOMEM;
	return write_file(path, text, 0600, 0);
}

static int proc_from_json(json_t *j, struct proc_id *ret)
{
	json_t *pid = json_object_get(j, "pid"), *st = json_object_get(j, "start_time");

	if (!json_is_integer(pid) || !json_is_integer(st) || json_integer_value(pid) <= 1 ||
	    json_integer_value(pid) > INT32_MAX || json_integer_value(st) < 0)
		return -EINVAL;
	ret->pid = (pid_t)json_integer_value(pid);
	ret->start_time = (uint64_t)json_integer_value(st);
	return 0;
}

int vmstate_parse(const char *buf, size_t len, struct vmstate *ret)
{
	_cleanup_(json_decrefp) json_t *j = NULL;
	_cleanup_(vmstate_clear) struct vmstate s = {};
	_cleanup_(schema_errors_clear) struct schema_errors errors = {};
	json_t *shares, *v, *q, *inst, *le;
	size_t i;

	j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL);
	if (!j)
		return -EINVAL;
	if (!json_is_object(j) || json_integer_value(json_object_get(j, "version")) != 1)
		return -EINVAL;
	if (def_parse(json_object_get(j, "definition"), &s.def, &errors) < 0)
		return -EINVAL;
	/* Absent for a libvirt domain: libvirt runs its QEMU. */
	q = json_object_get(j, "qemu");
	if (q && proc_from_json(q, &s.qemu) < 0)
		return -EINVAL;
	inst = json_object_get(j, "instance");
	if (inst && (!json_is_string(inst) || !(s.instance = strdup(json_string_value(inst)))))
		return -EINVAL;
	le = json_object_get(j, "last_exit");
	if (le && (!json_is_string(le) || json_string_length(le) != strlen(json_string_value(le)) ||
		   !last_exit_valid(json_string_value(le)) || !(s.last_exit = strdup(json_string_value(le)))))
		return -EINVAL;
	shares = json_object_get(j, "shares");
	if (!json_is_array(shares) || json_array_size(shares) > 128)
		return -EINVAL;
	s.n_shares = json_array_size(shares);
	s.shares = calloc(s.n_shares + 1, sizeof(*s.shares));
	if (!s.shares)
		return -ENOMEM;
	json_array_foreach(shares, i, v)
		if (proc_from_json(v, &s.shares[i]) < 0)
			return -EINVAL;
	s.started_at = (uint64_t)json_integer_value(json_object_get(j, "started_at"));
	s.boot_usec = (uint64_t)json_integer_value(json_object_get(j, "boot_usec"));
	s.ready = json_is_true(json_object_get(j, "ready"));
	s.restarts = (uint32_t)json_integer_value(json_object_get(j, "restarts"));
	*ret = s;
	s = (struct vmstate){};
	return 0;
}

int vmstate_read(const char *dir, struct vmstate *ret)
{
	_cleanup_free_ char *path = path_join(dir, "state.json"), *buf = NULL;
	size_t len;
	int r;

	if (!path)
		return -ENOMEM;
	r = read_file(path, 1024 * 1024, &buf, &len);
	if (r < 0)
		return r;
	return vmstate_parse(buf, len, ret);
}
