/*
 * protoctl-enter: runs a command inside a running env, confined exactly like
 * the env's PID 1 (issue 15). nsenter/setpriv cannot do it: neither copies a
 * seccomp filter, and nsenter keeps the caller's whole capability set.
 *
 *   protoctl-enter dump PID FILE
 *       Copies PID's seccomp filters (PTRACE_SECCOMP_GET_FILTER) into FILE:
 *       per filter, a native-endian u32 instruction count then the
 *       instructions, oldest filter first. `exec` does it itself when FILE
 *       is missing, so this happens once per env (per machine life).
 *
 *   protoctl-enter exec -t PID -f FILE [-c PROCS]... [-u UID -g GID] [-w DIR] [-e K=V]... -- CMD...
 *       Joins each cgroup.procs file (host paths, so before any setns), enters
 *       PID's namespaces (user included), drops every capability that is not
 *       in PID's bounding set, sets no_new_privs when PID has it, loads FILE's
 *       filters, takes the ids, and execs CMD with exactly the -e variables
 *       (found on their PATH; no `env -i` process in between). It forks once (the PID
 *       namespace applies to children) and exits with the child's status, or
 *       kills itself with the child's signal, as nsenter does: the agent's exec
 *       plumbing signals the only child and reads the wrapper's status.
 *
 * It refuses (exit 125 with a message) rather than run anything less
 * confined: a missing or empty filter file, a namespace it cannot enter, a
 * capability it cannot drop. Why C: a measured ~1 ms per exec, and seccomp and
 * ptrace have no reachable interface from Node or from the shell tools.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PTRACE_SECCOMP_GET_FILTER
#define PTRACE_SECCOMP_GET_FILTER 0x420c
#endif
#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

#define FAIL 125
#define MAX_FILTERS 64
#define MAX_INSNS 4096

static void die(const char *what) {
  fprintf(stderr, "protoctl-enter: %s: %s\n", what, strerror(errno));
  exit(FAIL);
}

static void dief(const char *msg) {
  fprintf(stderr, "protoctl-enter: %s\n", msg);
  exit(FAIL);
}

/* The value of a "Key:\t..." line of /proc/PID/status, or NULL. */
static char *status_field(const char *status, const char *key) {
  size_t n = strlen(key);
  for (const char *p = status; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
    if (strncmp(p, key, n) == 0 && p[n] == ':') {
      const char *v = p + n + 1;
      while (*v == '\t' || *v == ' ') v++;
      size_t len = strcspn(v, "\n");
      return strndup(v, len);
    }
  }
  return NULL;
}

static char *read_status(pid_t pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) die("open target status");
  static char buf[8192];
  ssize_t len = read(fd, buf, sizeof buf - 1);
  if (len < 0) die("read target status");
  buf[len] = 0;
  close(fd);
  return buf;
}

/*
 * Writes PID's filters to OUT (atomically: temp file, rename). Returns
 * -EPERM when another tracer holds PID (a concurrent copy: the caller waits
 * for its file); any other failure ends the process.
 */
static int dump(pid_t pid, const char *out) {
  char *seccomp = status_field(read_status(pid), "Seccomp");
  if (!seccomp || strcmp(seccomp, "2") != 0) dief("the target has no seccomp filter (Seccomp is not 2)");
  if (ptrace(PTRACE_SEIZE, pid, 0, 0) < 0) {
    if (errno == EPERM) return -EPERM;
    die("PTRACE_SEIZE");
  }
  if (ptrace(PTRACE_INTERRUPT, pid, 0, 0) < 0) die("PTRACE_INTERRUPT");
  int st;
  if (waitpid(pid, &st, __WALL) < 0) die("waitpid");
  /* whole file in memory first: the tracee stays stopped for as short as possible */
  static struct sock_filter insns[MAX_INSNS];
  static uint32_t counts[MAX_FILTERS];
  size_t used = 0, nfilters = 0;
  for (;; nfilters++) {
    if (nfilters == MAX_FILTERS) dief("too many seccomp filters");
    long n = ptrace(PTRACE_SECCOMP_GET_FILTER, pid, (void *)nfilters, NULL);
    if (n < 0 && errno == ENOENT) break;
    if (n <= 0 || used + (size_t)n > MAX_INSNS) {
      ptrace(PTRACE_DETACH, pid, 0, 0);
      die("PTRACE_SECCOMP_GET_FILTER");
    }
    if (ptrace(PTRACE_SECCOMP_GET_FILTER, pid, (void *)nfilters, insns + used) != n) {
      ptrace(PTRACE_DETACH, pid, 0, 0);
      die("PTRACE_SECCOMP_GET_FILTER");
    }
    counts[nfilters] = (uint32_t)n;
    used += (size_t)n;
  }
  if (ptrace(PTRACE_DETACH, pid, 0, 0) < 0) die("PTRACE_DETACH");
  if (nfilters == 0) dief("the target has no seccomp filter");
  /*
   * Index 0 is the OLDEST filter (the kernel's get_nth_filter counts from the
   * first installed; checked: a copy loaded in index order dumps back
   * identical). The file keeps index order, which is the load order.
   */
  char tmp[4096];
  if (snprintf(tmp, sizeof tmp, "%s.tmp-%d", out, (int)getpid()) >= (int)sizeof tmp) dief("path too long");
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) die("create filter file");
  size_t offs[MAX_FILTERS];
  for (size_t i = 0, o = 0; i < nfilters; i++) {
    offs[i] = o;
    o += counts[i];
  }
  for (size_t k = 0; k < nfilters; k++) {
    if (write(fd, &counts[k], sizeof counts[k]) != sizeof counts[k]) die("write filter file");
    size_t bytes = counts[k] * sizeof(struct sock_filter);
    if (write(fd, insns + offs[k], bytes) != (ssize_t)bytes) die("write filter file");
  }
  if (close(fd) < 0) die("write filter file");
  if (rename(tmp, out) < 0) die("rename filter file");
  return 0;
}

struct ns {
  const char *name;
  int type;
  int fd;
};

/* The user namespace first: it is skipped on the first pass (see enter_namespaces). */
static struct ns nss[] = {
    {"user", CLONE_NEWUSER, -1}, {"cgroup", CLONE_NEWCGROUP, -1}, {"ipc", CLONE_NEWIPC, -1},
    {"uts", CLONE_NEWUTS, -1},   {"net", CLONE_NEWNET, -1},       {"pid", CLONE_NEWPID, -1},
    {"mnt", CLONE_NEWNS, -1},    {"time", CLONE_NEWTIME, -1},
};
#define NNS (sizeof nss / sizeof nss[0])

static void open_namespaces(pid_t pid) {
  for (size_t i = 0; i < NNS; i++) {
    char path[64], self[64];
    snprintf(path, sizeof path, "/proc/%d/ns/%s", (int)pid, nss[i].name);
    snprintf(self, sizeof self, "/proc/self/ns/%s", nss[i].name);
    struct stat a, b;
    if (stat(path, &a) < 0) {
      if (errno == ENOENT && nss[i].type == CLONE_NEWTIME) continue; /* kernel without time ns */
      die(path);
    }
    /* the same namespace as ours (a privileged env's user ns): setns would say EINVAL */
    if (stat(self, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) continue;
    nss[i].fd = open(path, O_RDONLY | O_CLOEXEC);
    if (nss[i].fd < 0) die(path);
  }
}

/*
 * Two passes, the user namespace left out of the first: entering it first
 * would take away the host capabilities the other setns calls need when the
 * env's user namespace deprivileges us; when it would grant them instead,
 * the first pass fails on those and the second enters them after it.
 */
static void enter_namespaces(void) {
  for (int pass = 0; pass < 2; pass++) {
    for (size_t i = pass ? 0 : 1; i < NNS; i++) {
      if (nss[i].fd < 0) continue;
      if (setns(nss[i].fd, nss[i].type) < 0) {
        if (pass == 0) continue;
        die(nss[i].name);
      }
      close(nss[i].fd);
      nss[i].fd = -1;
    }
  }
}

struct filters {
  size_t n;
  struct sock_fprog prog[MAX_FILTERS];
};

/*
 * Opens the copy of PID's filters, making it first when missing: the first
 * exec into an env copies them (one process less on the create-to-first-exec
 * path than a separate copy step); a concurrent first exec waits for its file.
 */
static int open_filters(pid_t pid, const char *path) {
  for (int i = 0; i < 400; i++) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0 || errno != ENOENT) return fd;
    if (i == 0 && dump(pid, path) == 0) continue;
    usleep(5000);
  }
  errno = ETIMEDOUT;
  return -1;
}

static void load_filter_file(pid_t pid, const char *path, struct filters *f) {
  int fd = open_filters(pid, path);
  if (fd < 0) die("open seccomp filter file (the env's PID 1 filter could not be copied)");
  struct stat st;
  if (fstat(fd, &st) < 0) die("stat filter file");
  if (st.st_size <= 0 || st.st_size > (off_t)(MAX_INSNS * sizeof(struct sock_filter) + MAX_FILTERS * 4))
    dief("bad seccomp filter file");
  unsigned char *buf = malloc((size_t)st.st_size);
  if (!buf) die("malloc");
  if (read(fd, buf, (size_t)st.st_size) != st.st_size) die("read filter file");
  close(fd);
  size_t off = 0;
  f->n = 0;
  while (off < (size_t)st.st_size) {
    uint32_t count;
    if (f->n == MAX_FILTERS || off + 4 > (size_t)st.st_size) dief("bad seccomp filter file");
    memcpy(&count, buf + off, 4);
    off += 4;
    size_t bytes = (size_t)count * sizeof(struct sock_filter);
    if (count == 0 || count > MAX_INSNS || off + bytes > (size_t)st.st_size) dief("bad seccomp filter file");
    f->prog[f->n].len = (unsigned short)count;
    f->prog[f->n].filter = (struct sock_filter *)(buf + off);
    f->n++;
    off += bytes;
  }
  if (f->n == 0) dief("bad seccomp filter file");
}

static void join_cgroup(const char *procs) {
  int fd = open(procs, O_WRONLY | O_CLOEXEC);
  if (fd < 0) die(procs);
  char s[32];
  int len = snprintf(s, sizeof s, "%d\n", (int)getpid());
  if (write(fd, s, (size_t)len) != len) die(procs);
  close(fd);
}

/* Drops from the bounding set every capability PID 1 does not have, and the ambient set. */
static void drop_caps(unsigned long long keep) {
  for (int cap = 0; cap <= 63; cap++) {
    if (keep & (1ULL << cap)) continue;
    if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) != 1) continue; /* unknown to this kernel, or gone */
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) die("PR_CAPBSET_DROP");
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL) die("clear ambient caps");
}

static int child_status(pid_t child) {
  int st;
  while (waitpid(child, &st, 0) < 0)
    if (errno != EINTR) die("waitpid");
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) {
    /* die of the same signal, as nsenter does, so the caller sees it */
    int sig = WTERMSIG(st);
    signal(sig, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    kill(getpid(), sig);
    return 128 + sig;
  }
  return FAIL;
}

static long num(const char *s, const char *what) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || *s == 0 || *end || v < 0) {
    fprintf(stderr, "protoctl-enter: bad %s %s\n", what, s);
    exit(FAIL);
  }
  return v;
}

static int exec_in(int argc, char **argv) {
  pid_t pid = 0;
  const char *filter = NULL, *wd = "/";
  long uid = 0, gid = 0;
  int i = 2;
  if (clearenv() != 0) dief("clearenv");
  for (; i < argc && strcmp(argv[i], "--") != 0; i += 2) {
    if (i + 1 >= argc) dief("option without a value");
    const char *o = argv[i], *v = argv[i + 1];
    if (!strcmp(o, "-t")) pid = (pid_t)num(v, "pid");
    else if (!strcmp(o, "-f")) filter = v;
    else if (!strcmp(o, "-c")) join_cgroup(v); /* host paths: before any setns */
    else if (!strcmp(o, "-u")) uid = num(v, "uid");
    else if (!strcmp(o, "-g")) gid = num(v, "gid");
    else if (!strcmp(o, "-w")) wd = v;
    else if (!strcmp(o, "-e")) {
      if (!strchr(v, '=') || v[0] == '=' || putenv((char *)v) != 0) dief("bad -e, want KEY=VALUE");
    }
    else dief("unknown option");
  }
  if (i + 1 >= argc) dief("no command after --");
  if (pid <= 0 || !filter) dief("-t PID and -f FILTER are required");
  char **cmd = argv + i + 1;

  /* everything read from the host side before entering anything */
  char *status = read_status(pid);
  char *bnd = status_field(status, "CapBnd"), *nnp = status_field(status, "NoNewPrivs");
  if (!bnd || !nnp) dief("cannot read the target's CapBnd/NoNewPrivs");
  unsigned long long keep = strtoull(bnd, NULL, 16);
  int want_nnp = strcmp(nnp, "1") == 0;
  static struct filters f;
  load_filter_file(pid, filter, &f);
  open_namespaces(pid);
  enter_namespaces();

  pid_t child = fork();
  if (child < 0) die("fork");
  if (child > 0) return child_status(child);

  /* the child: in the PID namespace now */
  drop_caps(keep);
  if (want_nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die("PR_SET_NO_NEW_PRIVS");
  /*
   * The filters before the id change: without no_new_privs, loading one needs
   * CAP_SYS_ADMIN (in the env's user ns), which setuid to a non-root user
   * takes away. nspawn's filter allows the set*id calls (its own init uses them).
   */
  for (size_t k = 0; k < f.n; k++)
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &f.prog[k]) < 0) die("seccomp");
  if (setgroups(0, NULL) < 0) die("setgroups");
  if (setresgid((gid_t)gid, (gid_t)gid, (gid_t)gid) < 0) die("setgid");
  if (setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid) < 0) die("setuid");
  if (chdir(wd) < 0) {
    fprintf(stderr, "protoctl-enter: cd %s: %s\n", wd, strerror(errno));
    _exit(126);
  }
  execvp(cmd[0], cmd);
  fprintf(stderr, "protoctl-enter: %s: %s\n", cmd[0], strerror(errno));
  _exit(errno == ENOENT ? 127 : 126);
}

int main(int argc, char **argv) {
  if (argc == 4 && !strcmp(argv[1], "dump")) return dump((pid_t)num(argv[2], "pid"), argv[3]);
  if (argc >= 2 && !strcmp(argv[1], "exec")) return exec_in(argc, argv);
  fprintf(stderr,
          "usage: protoctl-enter dump PID FILE\n"
          "       protoctl-enter exec -t PID -f FILE [-c PROCS]... [-u UID -g GID] [-w DIR] [-e K=V]... -- CMD...\n");
  return 2;
}
