/*
 * prepare.c - `modelstream cache prepare DIR --medium tmpfs-huge|disk`: makes a node cache's
 * directory ready before the node agent starts. In Kubernetes this is the agent pod's
 * privileged init container, the one step that needs root: the agent itself runs as an
 * unprivileged user with a read-only root file system.
 *
 * tmpfs-huge mounts tmpfs with huge=within_size at DIR (at the host path, when the volume's
 * mountPropagation is Bidirectional), so that the cache's files sit in 2 MiB pages; a DIR
 * that already has such a mount on top is left as it is, with its size changed if --size
 * differs. disk leaves the file system alone. Both then hand DIR and what is in it to
 * --owner, the agent's user. The image has no shell and no mount(8): this is why the
 * binary does it itself.
 */
#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "cli.h"

#ifndef TMPFS_MAGIC
#define TMPFS_MAGIC 0x01021994
#endif
#ifndef HUGETLBFS_MAGIC
#define HUGETLBFS_MAGIC 0x958458f6
#endif

static const char prepare_usage[] =
    "Usage: modelstream cache prepare DIR --medium tmpfs-huge|disk [--size SIZE]\n"
    "                                     [--owner UID:GID]\n"
    "\n"
    "Makes DIR ready to be a node cache (needs root; in Kubernetes, a privileged init\n"
    "container of the node agent):\n"
    "  tmpfs-huge  mounts tmpfs -o huge=within_size,size=SIZE at DIR (or changes the size\n"
    "              of the one there), so the cache's files sit in 2 MiB pages. The pages are\n"
    "              charged to the memory cgroup of the process that writes them first: the\n"
    "              node agent, whose memory limit must cover SIZE.\n"
    "  disk        uses the file system DIR is on (local NVMe); its page cache can be\n"
    "              reclaimed.\n"
    "Then DIR and everything in it is given to --owner (the agent's user).\n"
    "\n"
    "Options:\n"
    "      --medium M     tmpfs-huge or disk\n"
    "      --size SIZE    the tmpfs size, like 200G (required for tmpfs-huge)\n"
    "      --owner U:G    numeric user and group to own DIR (default: leave as is)\n"
    "  -h, --help         show this help\n"
    "\n";

static unsigned owner_uid, owner_gid;

static int chown_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	if (lchown(path, owner_uid, owner_gid) != 0) {
		fprintf(stderr, "modelstream: %s: cannot change its owner (%s)\n", path,
		        strerror(errno));
		return -1;
	}
	return 0;
}

/* Undoes mountinfo's octal escapes (\040 for a space) in place. */
static void unescape(char *s)
{
	char *out = s;

	for (; *s != '\0'; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*out++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 3;
		} else {
			*out++ = *s;
		}
	}
	*out = '\0';
}

/* The top mount at `dir`: its file system type and super-block options ("" if none). */
static void top_mount(const char *dir, char *type, size_t type_size, char *opts, size_t opts_size)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[8192];

	type[0] = opts[0] = '\0';
	if (f == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL) {
		char *fields[6] = {0}, *rest, *sep, *save = NULL;
		int n = 0;

		sep = strstr(line, " - ");
		if (sep == NULL)
			continue;
		*sep = '\0';
		for (char *t = strtok_r(line, " ", &save); t != NULL && n < 6;
		     t = strtok_r(NULL, " ", &save))
			fields[n++] = t;
		if (n < 5)
			continue;
		unescape(fields[4]);
		if (strcmp(fields[4], dir) != 0)
			continue;
		rest = sep + 3; /* fstype source super-options */
		save = NULL;
		{
			char *fstype = strtok_r(rest, " \n", &save);
			char *source = strtok_r(NULL, " \n", &save);
			char *super = strtok_r(NULL, " \n", &save);

			(void)source;
			snprintf(type, type_size, "%s", fstype != NULL ? fstype : "");
			snprintf(opts, opts_size, "%s", super != NULL ? super : "");
		}
		/* Later lines are mounted on top of earlier ones: keep the last. */
	}
	fclose(f);
}

static int prepare_tmpfs(const char *dir, const char *size_text, int have_owner, int *mounted)
{
	char type[64], opts[1024], data[256];
	unsigned long flags = MS_NOSUID | MS_NODEV;

	top_mount(dir, type, sizeof(type), opts, sizeof(opts));
	if (strcmp(type, "tmpfs") == 0 && strstr(opts, "huge=within_size") != NULL) {
		/* Ours from an earlier start: keep the files, change only the size. */
		snprintf(data, sizeof(data), "size=%s", size_text);
		if (mount("tmpfs", dir, "tmpfs", MS_REMOUNT | flags, data) != 0) {
			fprintf(stderr, "modelstream: %s: cannot resize its tmpfs to %s (%s)\n",
			        dir, size_text, strerror(errno));
			return EXIT_FAILURE_OTHER;
		}
		*mounted = 0;
		return EXIT_OK;
	}
	if (have_owner)
		snprintf(data, sizeof(data), "huge=within_size,size=%s,mode=0755,uid=%u,gid=%u",
		         size_text, owner_uid, owner_gid);
	else
		snprintf(data, sizeof(data), "huge=within_size,size=%s,mode=0755", size_text);
	if (mount("tmpfs", dir, "tmpfs", flags, data) != 0) {
		int e = errno;

		fprintf(stderr, "modelstream: %s: cannot mount tmpfs with huge pages (%s)%s\n", dir,
		        strerror(e),
		        e == EPERM
		            ? ": cache prepare needs CAP_SYS_ADMIN; in Kubernetes, run it in a "
		              "privileged init container"
		        : e == EINVAL ? ": is the size valid, and does the kernel have "
		                        "CONFIG_TRANSPARENT_HUGEPAGE?"
		                      : "");
		return e == EPERM ? EXIT_DENIED : EXIT_FAILURE_OTHER;
	}
	*mounted = 1;
	return EXIT_OK;
}

int cmd_cache_prepare(int argc, char **argv)
{
	static const struct option options[] = {
	    {"medium", required_argument, NULL, 'm'},
	    {"size", required_argument, NULL, 's'},
	    {"owner", required_argument, NULL, 'o'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *medium = NULL, *size_text = NULL;
	char real[PATH_MAX], shown[PATH_MAX + 64];
	int have_owner = 0, mounted = 0, c, rc;
	struct statfs fs;
	int64_t size;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", options, NULL)) != -1) {
		switch (c) {
		case 'm':
			medium = optarg;
			break;
		case 's':
			if (cli_parse_size(&size, optarg) < 0 || size < (1 << 20))
				return cli_usage_error("--size must be a size like 200G, not '%s'",
				                       optarg);
			size_text = optarg;
			break;
		case 'o': {
			char extra;

			if (sscanf(optarg, "%u:%u%c", &owner_uid, &owner_gid, &extra) != 2)
				return cli_usage_error(
				    "--owner must be UID:GID like 65532:65532, not "
				    "'%s'",
				    optarg);
			have_owner = 1;
			break;
		}
		case 'h':
			fputs(prepare_usage, stdout);
			fputs(cli_exit_codes_help, stdout);
			return EXIT_OK;
		default:
			return cli_option_error("cache prepare", optopt, argv[optind - 1]);
		}
	}
	if (argc - optind != 1)
		return cli_usage_error(
		    "cache prepare takes one DIR (see 'modelstream cache prepare "
		    "--help')");
	if (medium == NULL || (strcmp(medium, "tmpfs-huge") != 0 && strcmp(medium, "disk") != 0))
		return cli_usage_error(
		    "cache prepare needs --medium tmpfs-huge or --medium disk%s%s",
		    medium != NULL && strcmp(medium, "hugetlbfs") == 0
		        ? " (hugetlbfs holds only files whose size is a multiple "
		          "of the huge page size, which safetensors readers "
		          "refuse; tmpfs-huge gives the same pages to files of any "
		          "size)"
		        : "",
		    "");
	if (strcmp(medium, "tmpfs-huge") == 0 && size_text == NULL)
		return cli_usage_error("--medium tmpfs-huge needs --size, like --size 200G");
	if (mkdir(argv[optind], 0755) != 0 && errno != EEXIST) {
		fprintf(stderr, "modelstream: %s: cannot create the cache directory (%s)\n",
		        argv[optind], strerror(errno));
		return errno == EACCES || errno == EPERM ? EXIT_DENIED : EXIT_FAILURE_OTHER;
	}
	if (realpath(argv[optind], real) == NULL) {
		fprintf(stderr, "modelstream: %s: %s\n", argv[optind], strerror(errno));
		return EXIT_FAILURE_OTHER;
	}
	if (strcmp(medium, "tmpfs-huge") == 0 &&
	    (rc = prepare_tmpfs(real, size_text, have_owner, &mounted)) != EXIT_OK)
		return rc;
	if (statfs(real, &fs) != 0) {
		fprintf(stderr, "modelstream: %s: %s\n", real, strerror(errno));
		return EXIT_FAILURE_OTHER;
	}
	if ((unsigned long)fs.f_type == HUGETLBFS_MAGIC) {
		fprintf(
		    stderr,
		    "modelstream: %s: is hugetlbfs, which safetensors readers cannot use (files "
		    "there must be a multiple of the huge page size); use --medium tmpfs-huge\n",
		    real);
		return EXIT_USAGE;
	}
	if (have_owner && nftw(real, chown_one, 16, FTW_PHYS | FTW_MOUNT) != 0)
		return EXIT_DENIED;
	if (strcmp(medium, "tmpfs-huge") == 0)
		snprintf(shown, sizeof(shown), "tmpfs huge=within_size, size %s (%s)", size_text,
		         mounted ? "mounted" : "already mounted; size set");
	else
		snprintf(shown, sizeof(shown), "disk (%s)",
		         (unsigned long)fs.f_type == TMPFS_MAGIC ? "tmpfs" : "not tmpfs");
	if (have_owner)
		printf("cache prepare: %s: %s, owned by %u:%u\n", real, shown, owner_uid,
		       owner_gid);
	else
		printf("cache prepare: %s: %s\n", real, shown);
	return EXIT_OK;
}
