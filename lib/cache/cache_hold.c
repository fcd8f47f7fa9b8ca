/*
 * cache_hold.c - holds on published models: how a reader in another pod tells the node
 * agent "I am using this model, do not evict it".
 *
 * A model is published as DIR/models/NAME -> .snapshots/NAME.GEN/, a directory of links to
 * blobs. A hold is a shared flock(2) on that snapshot directory; an evictor takes an
 * exclusive one without waiting, and leaves the model alone if it cannot. Why this shape:
 *  - a reader's mount is read-only (on tmpfs the reader must not even be charged for the
 *    cache's pages), and flock needs only a descriptor opened for reading, of a directory;
 *  - flock lives on the inode, so it is seen across containers and PID namespaces, where
 *    the /proc scan that finds open files cannot see the other pod's processes;
 *  - the kernel drops it however the holder ends, so a crashed pod never pins a model;
 *  - it is taken on the generation being read: a model published again keeps the old
 *    generation's hold meaningful for the files that reader has open.
 * Race: a holder resolves the link, locks the snapshot, then reads the link again; an
 * evictor locks the snapshot exclusively before it removes the link, under the layout lock.
 * So a hold either sees the link still pointing at its snapshot (and the evictor then
 * fails its exclusive lock) or finds the model gone.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "alloc.h"
#include "cache.h"
#include "error.h"

struct ms_cache_hold {
	int fd; /* the snapshot directory, flocked LOCK_SH */
	char path[PATH_MAX];
};

int ms__cache_snapshot_of(const char *dir, const char *name, char *out, size_t size)
{
	char link[PATH_MAX], target[PATH_MAX];
	ssize_t n;

	if ((size_t)snprintf(link, sizeof(link), "%s/models/%s", dir, name) >= sizeof(link))
		return ms__error_set(MS_EINVAL, "%s: the model path is too long", dir);
	n = readlink(link, target, sizeof(target) - 1);
	if (n < 0) {
		if (errno == ENOENT)
			return ms__error_set(MS_ENOTFOUND, "%s: no model '%s' is published there",
			                     dir, name);
		return ms__error_errno(errno, "%s", link);
	}
	target[n] = '\0';
	if (strncmp(target, ".snapshots/", 11) != 0 || strchr(target + 11, '/') != NULL)
		return ms__error_set(MS_EFORMAT, "%s: is not a link the cache made", link);
	if ((size_t)snprintf(out, size, "%s/models/%s", dir, target) >= size)
		return ms__error_set(MS_EINVAL, "%s: the model path is too long", dir);
	return 0;
}

int ms_cache_hold_new(ms_cache_hold **out, const char *dir, const char *name)
{
	char snap[PATH_MAX], again[PATH_MAX];
	ms_cache_hold *h = NULL;
	int rc, fd = -1;

	*out = NULL;
	if (dir == NULL || !ms__cache_name_ok(name))
		return ms__error_set(MS_EINVAL,
		                     "'%.40s' is not a model name (1-128 of A-Z a-z 0-9 . _ -, not "
		                     "starting with '.')",
		                     name != NULL ? name : "(null)");
	for (int attempt = 0; attempt < 8; attempt++) {
		if ((rc = ms__cache_snapshot_of(dir, name, snap, sizeof(snap))) < 0)
			goto done;
		fd = open(snap, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0) {
			if (errno == ENOENT)
				continue; /* published again or evicted between the two steps */
			rc = ms__error_errno(errno, "%s", snap);
			goto done;
		}
		while (flock(fd, LOCK_SH) != 0)
			if (errno != EINTR) {
				rc = ms__error_errno(errno, "%s: lock", snap);
				goto done;
			}
		/* Still the published generation? Otherwise try the new one. */
		if ((rc = ms__cache_snapshot_of(dir, name, again, sizeof(again))) < 0)
			goto done;
		if (strcmp(snap, again) == 0)
			break;
		close(fd);
		fd = -1;
	}
	if (fd < 0) {
		rc = ms__error_set(MS_EBUSY, "%s: model '%s' keeps changing; try again", dir, name);
		goto done;
	}
	if ((h = ms__calloc(1, sizeof(*h))) == NULL) {
		rc = ms__error_set(MS_ENOMEM, "%s: out of memory", dir);
		goto done;
	}
	h->fd = fd;
	fd = -1;
	snprintf(h->path, sizeof(h->path), "%s/models/%s", dir, name);
	*out = h;
	rc = 0;
done:
	if (fd >= 0)
		close(fd);
	return rc;
}

const char *ms_cache_hold_path(const ms_cache_hold *hold)
{
	return hold->path;
}

void ms_cache_hold_free(ms_cache_hold *hold)
{
	if (hold == NULL)
		return;
	close(hold->fd);
	ms__free(hold);
}

int ms__cache_model_lock(const ms_cache *c, const char *name)
{
	char snap[PATH_MAX];
	int fd;

	if (ms__cache_snapshot_of(c->dir, name, snap, sizeof(snap)) < 0)
		return -1; /* nothing published under the name: nothing to hold */
	fd = open(snap, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		close(fd);
		return -2;
	}
	return fd;
}
