/* SPDX-License-Identifier: MIT */
/*
 * caps.h - giving up privileges once the listeners are open: keep only
 * CAP_DAC_READ_SEARCH, set no_new_privs, and optionally become another
 * user and group (--user, --group).  Uses libcap.  Facts:
 * ../shared/docs/vfkit-launch.md section 6; capabilities(7), prctl(2).
 *
 * Why CAP_DAC_READ_SEARCH stays: file data is read lazily, after the drop,
 * through file handles (open_by_handle_at(2) requires the capability) and,
 * as a fallback, by path; a root-owned mode 0600 file in the tree (typical
 * of container storage) is only readable with it.  It grants reading and
 * directory search, never writing.
 *
 * Nothing here logs: functions return 0 or -errno and main.c reports.
 */
#ifndef EROFS_NBD_CAPS_H
#define EROFS_NBD_CAPS_H

#include <stdbool.h>
#include <sys/types.h>

struct caps_opts {
	bool set_uid;		/* switch to uid (--user) */
	uid_t uid;
	bool set_gid;		/* switch to gid (--group, or --user's group) */
	gid_t gid;
};

/*
 * Looks up --user NAME (a user name, or a decimal uid) and returns its uid
 * and primary gid from the passwd database (a number's by getpwuid_r(),
 * so "65534" gets nobody's group as "nobody" does); the gid is (gid_t)-1
 * for a number with no passwd entry, which has no primary group.  Returns
 * 0, -ENOENT (no such user) or -errno of getpwnam_r / getpwuid_r.
 */
int caps_lookup_user(const char *name, uid_t *ret_uid, gid_t *ret_gid);

/* Looks up --group NAME (a group name or a decimal gid); as above. */
int caps_lookup_group(const char *name, gid_t *ret_gid);

/*
 * Confines the calling process, in this order:
 *   1. prctl(PR_SET_NO_NEW_PRIVS): no execve() gains privileges again;
 *   2. the bounding set loses every capability but CAP_DAC_READ_SEARCH
 *      (PR_CAPBSET_DROP; needs CAP_SETPCAP, so done before that goes;
 *      skipped when we lack CAP_SETPCAP, e.g. a non-root user or a
 *      systemd unit whose CapabilityBoundingSet= already did it);
 *   3. the ambient set is cleared (nothing we exec inherits a capability);
 *   4. with o->set_gid / o->set_uid: supplementary groups cleared, then
 *      setresgid() and setresuid(), keeping the permitted set across the
 *      uid change with PR_SET_KEEPCAPS (needs CAP_SETGID / CAP_SETUID);
 *   5. permitted = effective = {CAP_DAC_READ_SEARCH} if it was permitted
 *      before, else empty; inheritable empty.  capset() is skipped when
 *      the sets are that already, so that a seccomp filter refusing
 *      capset (systemd's ~@privileged) does no harm.
 * Must run before any thread is created: capabilities are per thread.
 * On success *ret_text (if not NULL) is a malloc'ed cap_to_text() of the
 * result, e.g. "cap_dac_read_search=ep" or "=" for none.  Returns 0, or
 * -errno with *ret_what (if not NULL) naming the failed step; -EPERM
 * when a step lacks the privilege it needs (--user as a non-root user).
 */
int caps_confine(const struct caps_opts *o, char **ret_text, const char **ret_what);

#endif
