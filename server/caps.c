/* SPDX-License-Identifier: MIT */
/*
 * caps.c - dropping privileges after the listeners are open (see caps.h):
 * no_new_privs, the bounding and ambient sets, the user switch, and the
 * permitted/effective sets reduced to CAP_DAC_READ_SEARCH, with libcap.
 * The steps and their order follow capabilities(7) and prctl(2) as
 * summarised in ../shared/docs/vfkit-launch.md section 6.2 and 6.3.
 */
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "server/caps.h"
#include "server/cleanup.h"

/* The one capability the server keeps. */
#define KEEP_CAP CAP_DAC_READ_SEARCH

static void cap_freep(cap_t *c)
{
	if (*c)
		cap_free(*c);
}
#define _cleanup_cap_ _cleanup_(cap_freep)

/* Parses a whole decimal id; -EINVAL if s is not one. */
static int parse_id(const char *s, unsigned long *ret)
{
	char *end;

	if (!*s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	/* (uid_t)-1 means "unchanged" to setresuid(): never a real id. */
	if (errno || *end || v >= UINT_MAX)
		return -EINVAL;
	*ret = v;
	return 0;
}

/* A buffer size for the getpw / getgr _r functions. */
static size_t nss_bufsize(int name)
{
	long n = sysconf(name);

	return n > 0 && n < (1 << 20) ? (size_t)n : 16384;
}

/*
 * The passwd entry of a user name, or of uid id when name is NULL;
 * fills *ret_gid with its primary group.  Returns 0, -ENOENT (no entry)
 * or -errno of getpwnam_r / getpwuid_r.
 */
static int passwd_lookup(const char *name, uid_t id, uid_t *ret_uid, gid_t *ret_gid)
{
	size_t size = nss_bufsize(_SC_GETPW_R_SIZE_MAX);
	struct passwd pw, *res = NULL;
	int r;

	for (;;) {
		_cleanup_free_ char *buf = malloc(size);
		if (!buf)
			return -ENOMEM;
		r = name ? getpwnam_r(name, &pw, buf, size, &res) :
			   getpwuid_r(id, &pw, buf, size, &res);
		if (r == ERANGE && size < (1U << 24)) {
			size *= 2;
			continue;
		}
		if (r == 0 && res) {
			*ret_uid = pw.pw_uid;
			*ret_gid = pw.pw_gid;
			return 0;
		}
		return r == 0 || r == ENOENT || r == ESRCH ? -ENOENT : -r;
	}
}

int caps_lookup_user(const char *name, uid_t *ret_uid, gid_t *ret_gid)
{
	unsigned long id;
	int r;

	r = passwd_lookup(name, 0, ret_uid, ret_gid);
	if (r != -ENOENT)
		return r;
	if (parse_id(name, &id) < 0)
		return -ENOENT;
	/* A number: that uid's entry gives its group, as for a name. */
	r = passwd_lookup(NULL, (uid_t)id, ret_uid, ret_gid);
	if (r != -ENOENT)
		return r;
	*ret_uid = (uid_t)id;
	*ret_gid = (gid_t)-1;
	return 0;
}

int caps_lookup_group(const char *name, gid_t *ret_gid)
{
	size_t size = nss_bufsize(_SC_GETGR_R_SIZE_MAX);
	struct group gr, *res = NULL;
	unsigned long id;
	int r;

	for (;;) {
		_cleanup_free_ char *buf = malloc(size);
		if (!buf)
			return -ENOMEM;
		r = getgrnam_r(name, &gr, buf, size, &res);
		if (r == ERANGE && size < (1U << 24)) {
			size *= 2;
			continue;
		}
		if (r == 0 && res) {
			*ret_gid = gr.gr_gid;
			return 0;
		}
		break;
	}
	if (r != 0 && r != ENOENT && r != ESRCH)
		return -r;
	if (parse_id(name, &id) < 0)
		return -ENOENT;
	*ret_gid = (gid_t)id;
	return 0;
}

/* True if capability v is set in flag set f of c. */
static bool cap_is_set(cap_t c, cap_value_t v, cap_flag_t f)
{
	cap_flag_value_t x = CAP_CLEAR;

	return cap_get_flag(c, v, f, &x) == 0 && x == CAP_SET;
}

/* Step 2: every capability but KEEP_CAP leaves the bounding set. */
static int drop_bounding_set(cap_t cur)
{
	int max = cap_max_bits();

	if (!cap_is_set(cur, CAP_SETPCAP, CAP_EFFECTIVE))
		return 0;	/* not ours to change: a manager did it, or nobody can */
	for (int c = 0; c < max; c++) {
		if (c == KEEP_CAP || cap_get_bound((cap_value_t)c) != 1)
			continue;
		if (cap_drop_bound((cap_value_t)c) < 0 && errno != EINVAL)
			return -errno;
	}
	return 0;
}

/* Step 4: the new group and user, keeping the permitted set. */
static int switch_ids(const struct caps_opts *o, const char **what)
{
	int r = 0;

	if (o->set_uid && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) {
		*what = "prctl(PR_SET_KEEPCAPS)";
		return -errno;
	}
	if (o->set_gid) {
		/* Groups first: once the uid changed we may not change them. */
		if (setgroups(0, NULL) < 0) {
			*what = "setgroups";
			return -errno;
		}
		if (setresgid(o->gid, o->gid, o->gid) < 0) {
			*what = "setresgid";
			return -errno;
		}
	}
	if (o->set_uid) {
		if (setresuid(o->uid, o->uid, o->uid) < 0) {
			*what = "setresuid";
			r = -errno;
		}
		(void)prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
	}
	return r;
}

int caps_confine(const struct caps_opts *o, char **ret_text, const char **ret_what)
{
	const cap_value_t keep = KEEP_CAP;
	_cleanup_cap_ cap_t cur = NULL, want = NULL;
	const char *what = NULL;
	bool had_keep;
	int r, diff;

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		what = "prctl(PR_SET_NO_NEW_PRIVS)";
		r = -errno;
		goto fail;
	}

	cur = cap_get_proc();
	if (!cur) {
		what = "cap_get_proc";
		r = -errno;
		goto fail;
	}
	had_keep = cap_is_set(cur, keep, CAP_PERMITTED);

	r = drop_bounding_set(cur);
	if (r < 0) {
		what = "dropping capabilities from the bounding set";
		goto fail;
	}
	/* EINVAL: a kernel older than 4.3 has no ambient set. */
	if (cap_reset_ambient() < 0 && errno != EINVAL) {
		what = "clearing the ambient capabilities";
		r = -errno;
		goto fail;
	}
	if (o->set_uid || o->set_gid) {
		r = switch_ids(o, &what);
		if (r < 0)
			goto fail;
	}

	want = cap_init();
	if (!want) {
		what = "cap_init";
		r = -errno;
		goto fail;
	}
	if (had_keep &&
	    (cap_set_flag(want, CAP_PERMITTED, 1, &keep, CAP_SET) < 0 ||
	     cap_set_flag(want, CAP_EFFECTIVE, 1, &keep, CAP_SET) < 0)) {
		what = "cap_set_flag";
		r = -errno;
		goto fail;
	}
	cap_free(cur);
	cur = cap_get_proc();
	if (!cur) {
		what = "cap_get_proc";
		r = -errno;
		goto fail;
	}
	diff = cap_compare(cur, want);
	if (diff != 0 && cap_set_proc(want) < 0) {
		/*
		 * Only the inheritable set differs (systemd's
		 * AmbientCapabilities= puts the cap there too) and capset is
		 * filtered: harmless, with the ambient set empty and
		 * no_new_privs set.
		 */
		if (errno != EPERM || CAP_DIFFERS(diff, CAP_PERMITTED) ||
		    CAP_DIFFERS(diff, CAP_EFFECTIVE)) {
			what = "capset";
			r = -errno;
			goto fail;
		}
	}

	/* Check what the kernel now says rather than trusting the steps. */
	cap_free(cur);
	cur = cap_get_proc();
	if (!cur) {
		what = "cap_get_proc";
		r = -errno;
		goto fail;
	}
	diff = cap_compare(cur, want);
	if (CAP_DIFFERS(diff, CAP_PERMITTED) || CAP_DIFFERS(diff, CAP_EFFECTIVE)) {
		what = "checking the capabilities left";
		r = -EPERM;
		goto fail;
	}
	if (ret_text) {
		char *t = cap_to_text(cur, NULL);
		*ret_text = t ? strdup(t) : NULL;
		if (t)
			cap_free(t);
		if (!*ret_text) {
			what = "cap_to_text";
			r = -ENOMEM;
			goto fail;
		}
	}
	return 0;

fail:
	if (ret_what)
		*ret_what = what;
	return r;
}
