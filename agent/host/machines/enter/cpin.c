/*
 * protoctl-cpin: makes the new directory entries of an `env cp` into a
 * running env as the env's root user (fsuid/fsgid), for the agent
 * (common/tree-copy.ts, agent/service/copy-root.ts).
 *
 * Why: through /proc/LEADER/root the agent sees the env's own mounts (a tmpfs
 * the env mounted on /tmp), but the kernel refuses to create an inode for a
 * caller whose fsuid/fsgid has no mapping in the filesystem's user namespace
 * (a tmpfs mounted inside the env) or in the mount's idmap (the env's root,
 * idmapped by nspawn): EOVERFLOW, and the host's root is mapped in neither.
 * Node cannot set a thread's fsuid, so this helper creates, and the agent
 * writes the data and sets owners, modes and times on what it made, then
 * renames, through its own held directory fds, as for a stopped env.
 *
 * Usage: protoctl-cpin UID GID (host ids of the env's root). Requests on
 * stdin, NUL-terminated words: OP DIR NAME [TARGET], one reply line each
 * (0, or the errno):
 *   f  an empty regular file, mode 0600 (O_CREAT|O_EXCL|O_NOFOLLOW)
 *   d  a directory, mode 0700
 *   l  a symlink NAME -> TARGET
 *   r  rename NAME (one of the copy's temporary names, .protoctl-cp-*) to
 *      TARGET in the same directory, replacing what is there (the kernel
 *      checks the mover's ids for a new name as for a create)
 * DIR must be /proc/PPID/fd/N: a directory the agent holds open (resolved by
 * the agent inside the env's root, never by this helper); NAME (and r's
 * TARGET) one path component, not . or ..; f, d and l are exclusive (an
 * existing NAME: EEXIST). Nothing else: it cannot open, write or remove.
 * Exits at EOF.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* A host id: decimal, below 2^32 - 1 (-1 means "unchanged" to the kernel). */
static int parse_id(const char *s, unsigned *out) {
  size_t n = strlen(s);
  if (n == 0 || n > 10 || strspn(s, "0123456789") != n) return -1;
  unsigned long long v = strtoull(s, NULL, 10);
  if (v >= 0xffffffffULL) return -1;
  *out = (unsigned)v;
  return 0;
}

/* The fs caps dropped by the fsuid change come back from the permitted set. */
static int raise_caps(void) {
  struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
  struct __user_cap_data_struct d[2];
  if (syscall(SYS_capget, &h, d) < 0) return -1;
  d[0].effective = d[0].permitted;
  d[1].effective = d[1].permitted;
  return (int)syscall(SYS_capset, &h, d);
}

static int dir_ok(const char *dir) {
  char prefix[64];
  int n = snprintf(prefix, sizeof prefix, "/proc/%d/fd/", (int)getppid());
  if (n <= 0 || strncmp(dir, prefix, (size_t)n) != 0) return 0;
  const char *fd = dir + n;
  return *fd && strlen(fd) <= 9 && strspn(fd, "0123456789") == strlen(fd);
}

static int name_ok(const char *name) {
  size_t n = strlen(name);
  return n > 0 && n <= 255 && !strchr(name, '/') && strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

/* One request; 0 or an errno. */
static int apply(const char *op, const char *dir, const char *name, const char *target) {
  if (!dir_ok(dir) || !name_ok(name)) return EINVAL;
  int d = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (d < 0) return errno;
  int e = 0;
  if (strcmp(op, "f") == 0) {
    int f = openat(d, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (f < 0) e = errno;
    else close(f);
  } else if (strcmp(op, "d") == 0) {
    if (mkdirat(d, name, 0700) < 0) e = errno;
  } else if (strcmp(op, "l") == 0) {
    if (!target || !*target || strlen(target) >= 4096) e = EINVAL;
    else if (symlinkat(target, d, name) < 0) e = errno;
  } else if (strcmp(op, "r") == 0) {
    static const char tmp[] = ".protoctl-cp-";
    if (!target || !name_ok(target) || strncmp(name, tmp, sizeof tmp - 1) != 0) e = EINVAL;
    else if (renameat(d, name, d, target) < 0) e = errno;
  } else {
    e = EINVAL;
  }
  close(d);
  return e;
}

static char *word(char **buf, size_t *cap) {
  ssize_t n = getdelim(buf, cap, '\0', stdin);
  if (n <= 0 || (*buf)[n - 1] != '\0') return NULL;
  return strdup(*buf);
}

int main(int argc, char **argv) {
  unsigned uid, gid;
  if (argc != 3 || parse_id(argv[1], &uid) < 0 || parse_id(argv[2], &gid) < 0) {
    fprintf(stderr, "usage: protoctl-cpin UID GID\n");
    return 2;
  }
  umask(0);
  setfsgid(gid);
  setfsuid(uid);
  if ((unsigned)setfsgid((gid_t)-1) != gid || (unsigned)setfsuid((uid_t)-1) != uid || raise_caps() < 0) {
    fprintf(stderr, "protoctl-cpin: cannot take ids %u:%u: %s\n", uid, gid, strerror(errno));
    return 125;
  }
  char *buf = NULL;
  size_t cap = 0;
  for (;;) {
    char *op = word(&buf, &cap);
    if (!op) return 0;
    char *dir = word(&buf, &cap);
    char *name = dir ? word(&buf, &cap) : NULL;
    int two = strcmp(op, "l") == 0 || strcmp(op, "r") == 0;
    char *target = name && two ? word(&buf, &cap) : NULL;
    if (!name || (two && !target)) return 2;
    printf("%d\n", apply(op, dir, name, target));
    fflush(stdout);
    free(op);
    free(dir);
    free(name);
    free(target);
  }
}
