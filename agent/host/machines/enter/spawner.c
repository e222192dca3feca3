/*
 * protoctl-spawner: a long-lived helper of the agent that starts machines
 * (systemd-nspawn), snapshots env roots and deletes subvolumes, so the
 * agent's big Node process does not fork for them (issue 20 item 3, bench
 * env-create; item 2, the rm of the CLI cycle).
 *
 * Why: Node 20's libuv spawns with a plain fork() of the whole agent and
 * blocks the event loop until the child has exec'd: measured ~5.6 ms per
 * spawn even from a bare node here, more under load, twice per create (btrfs,
 * then `sh <join-cgroups> -- systemd-nspawn`, one more exec). This process is
 * small: its fork costs ~0.1 ms and the agent only writes a request.
 * Measured with bench/env-create/ab.ts (previous build against this one,
 * interleaved, 20 rounds, 2 cores loaded by others): create-to-first-exec
 * ratio to raw nspawn 1.17 -> 1.02, 1.39 -> 0.92 and 1.35 -> 1.16; agent CPU
 * per cycle 119 -> 108, 137 -> 120 and 111 -> 102 ms.
 *
 * Only the agent can use it: requests come on stdin, a pipe the agent made
 * (no socket anyone else could reach). Replies go to stdout. Requests carry
 * argv arrays, never shell text.
 *
 * Request: u32 little-endian payload length, then NUL-terminated words:
 *   ID start [c<cgroup.procs>]... o<log file> [n<notify socket>] [e<K=V>]... a<argv0> [a<arg>]...
 *       forks; the child starts a new session (the machine outlives this
 *       helper and the agent, as before), writes its pid into each
 *       cgroup.procs file (so it is in the env's cgroups before nspawn runs),
 *       stdin /dev/null, stdout+stderr appended to the log file, execs argv0
 *       (found on PATH of the env given) with exactly the e words as environment.
 *       With n: a datagram socket bound there (0600) for the child's sd_notify
 *       (the caller sets NOTIFY_SOCKET): when the child itself (SCM_CREDENTIALS)
 *       sends X_NSPAWN_LEADER_PID, the helper says so, and the agent stops
 *       scanning /proc for the leader every millisecond (2 cores: that scan
 *       competed with nspawn's own start).
 *   ID snap s<source subvolume> d<destination parent dir> n<name> [r] [q<bytes>]
 *       BTRFS_IOC_SNAP_CREATE_V2, what `btrfs subvolume snapshot [-r]` does.
 *       With q: then BTRFS_IOC_QGROUP_LIMIT on the new subvolume's own qgroup
 *       (max referenced, what `btrfs qgroup limit BYTES PATH` sets), the env's
 *       disk limit (pool/disk-limit.ts); when that fails the new snapshot is
 *       destroyed again, so a failed request leaves nothing. Saves the agent
 *       a `btrfs` process per limited create (~10-20 ms here).
 *   ID destroy d<parent dir> n<name>
 *       BTRFS_IOC_SNAP_DESTROY of subvolume <name> in <parent dir>, what `btrfs
 *       subvolume delete` does (its data goes in the kernel's cleaner, later).
 *       The parent is opened without following a symlink at its last
 *       component; a name that is no subvolume, or one holding subvolumes,
 *       fails and changes nothing (the agent then takes its slower path).
 *       Saves the agent a `btrfs` process per env rm (~15-20 ms here).
 *   ID squota p<directory>
 *       BTRFS_IOC_QUOTA_CTL ENABLE_SIMPLE_QUOTA on that directory's btrfs
 *       (a no-op when quotas are on already): only that, never a disable.
 * Replies, one line each:
 *   ID ok [PID]          the child has exec'd (start) / the snapshot exists
 *   ID err STAGE ERRNO   nothing runs / no snapshot; STAGE names the step that failed
 *   l PID LEADER         started child PID named its container leader (n above)
 *   x PID CODE SIGNAL    a started child exited (reaped here; -1 for the one not set)
 * It exits when stdin closes (the agent is gone); started children stay.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/btrfs.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_FRAME (1u << 20)
#define MAX_WORDS 4096
#define MAX_WATCH 64
/* uapi headers before 6.7 lack it (kernel ≥ 6.7 knows it) */
#ifndef BTRFS_QUOTA_CTL_ENABLE_SIMPLE_QUOTA
#define BTRFS_QUOTA_CTL_ENABLE_SIMPLE_QUOTA 4
#endif

static void reply(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Notify sockets of starts whose leader is not known yet: nspawn sends X_NSPAWN_LEADER_PID there. */
static struct watch {
  int fd;
  pid_t pid;
  int announced; /* the leader was reported; the socket stays until the child exits (nspawn's later READY=1 must find it) */
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
} watches[MAX_WATCH];
static int nwatch;

static void unwatch(int i) {
  close(watches[i].fd);
  unlink(watches[i].path);
  watches[i] = watches[--nwatch];
}

/* A datagram socket at `path` that only root may write to; -1 when it cannot be made (no hint then). */
static int notify_socket(const char *path) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  if (nwatch >= MAX_WATCH || strlen(path) >= sizeof a.sun_path) return -1;
  strcpy(a.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  int one = 1;
  unlink(path);
  if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || chmod(path, 0600) < 0 ||
      setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof one) < 0) {
    close(fd);
    unlink(path);
    return -1;
  }
  return fd;
}

/* Reads one message; replies `l PID LEADER` when nspawn itself (kernel-checked sender) names its leader. */
static void on_notify(int i) {
  char buf[4096];
  union {
    struct cmsghdr h;
    char b[CMSG_SPACE(sizeof(struct ucred))];
  } c;
  struct iovec v = {.iov_base = buf, .iov_len = sizeof buf - 1};
  struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1, .msg_control = &c, .msg_controllen = sizeof c};
  ssize_t n = recvmsg(watches[i].fd, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  if (n < 0) return;
  buf[n] = 0;
  struct cmsghdr *h = CMSG_FIRSTHDR(&m);
  if (!h || h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_CREDENTIALS) return;
  struct ucred cr;
  memcpy(&cr, CMSG_DATA(h), sizeof cr);
  if (cr.pid != watches[i].pid || watches[i].announced) return;
  static const char key[] = "X_NSPAWN_LEADER_PID=";
  for (char *line = buf; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
    if (strncmp(line, key, sizeof key - 1) != 0) continue;
    long leader = strtol(line + sizeof key - 1, NULL, 10);
    if (leader > 0) {
      reply("l %d %ld\n", (int)watches[i].pid, leader);
      watches[i].announced = 1;
    }
    return;
  }
}

static void reply(const char *fmt, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n <= 0) return;
  if ((size_t)n >= sizeof buf) n = sizeof buf - 1;
  const char *p = buf;
  while (n > 0) {
    ssize_t w = write(1, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) exit(0); /* the agent is gone */
    p += w;
    n -= w;
  }
}

static int read_full(int fd, void *buf, size_t len) {
  char *p = buf;
  while (len > 0) {
    ssize_t r = read(fd, p, len);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    p += r;
    len -= r;
  }
  return 0;
}

/* The child after fork: never returns. Failures go to the parent as (stage, errno) on `report`. */
static void start_child(int report, char **procs, int nprocs, const char *log, char **env, char **argv) {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  /* ignored signals stay ignored across exec: nspawn gets the defaults, as from Node's spawn */
  for (int s = 1; s < NSIG; s++) signal(s, SIG_DFL);
  int stage = 1;
  if (setsid() < 0) goto fail;
  stage = 2;
  char pid[24];
  int plen = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
  for (int i = 0; i < nprocs; i++) {
    int fd = open(procs[i], O_WRONLY | O_CLOEXEC);
    if (fd < 0) goto fail;
    if (write(fd, pid, plen) != plen) goto fail;
    close(fd);
  }
  stage = 3;
  int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
  int out = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (nul < 0 || out < 0) goto fail;
  if (dup2(nul, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0) goto fail;
  stage = 4;
  environ = env;
  execvpe(argv[0], argv, env);
fail:;
  int msg[2] = {stage, errno};
  if (write(report, msg, sizeof msg) < 0) _exit(125);
  _exit(125);
}

static void do_start(const char *id, char **w, int n) {
  char *procs[MAX_WORDS], *env[MAX_WORDS + 1], *argv[MAX_WORDS + 1];
  int np = 0, ne = 0, na = 0;
  const char *log = NULL, *notify = NULL;
  for (int i = 0; i < n; i++) {
    char *v = w[i] + 1;
    switch (w[i][0]) {
    case 'n': notify = v; break;
    case 'c': procs[np++] = v; break;
    case 'e': env[ne++] = v; break;
    case 'a': argv[na++] = v; break;
    case 'o': log = v; break;
    default: reply("%s err parse %d\n", id, EINVAL); return;
    }
  }
  env[ne] = NULL;
  argv[na] = NULL;
  if (na == 0 || !log) {
    reply("%s err parse %d\n", id, EINVAL);
    return;
  }
  /* close-on-exec pipe: EOF means the child exec'd; a message means it failed at that stage */
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0) {
    reply("%s err pipe %d\n", id, errno);
    return;
  }
  int nfd = notify ? notify_socket(notify) : -1;
  pid_t pid = fork();
  if (pid < 0) {
    reply("%s err fork %d\n", id, errno);
    close(p[0]);
    close(p[1]);
    if (nfd >= 0) {
      close(nfd);
      unlink(notify);
    }
    return;
  }
  if (pid == 0) {
    close(p[0]);
    start_child(p[1], procs, np, log, env, argv);
  }
  close(p[1]);
  int msg[2];
  int r = read_full(p[0], msg, sizeof msg);
  close(p[0]);
  if (nfd >= 0 && r == 0) {
    close(nfd);
    unlink(notify);
  } else if (nfd >= 0) {
    watches[nwatch].fd = nfd;
    watches[nwatch].pid = pid;
    watches[nwatch].announced = 0;
    strcpy(watches[nwatch].path, notify);
    nwatch++;
  }
  if (r == 0) {
    static const char *stages[] = {"?", "setsid", "cgroup", "stdio", "exec"};
    int s = msg[0] >= 1 && msg[0] <= 4 ? msg[0] : 0;
    /* the child has exited (125) or is about to: its exit line follows */
    reply("%s err %s %d\n", id, stages[s], msg[1]);
    return;
  }
  reply("%s ok %d\n", id, (int)pid);
}

/* A subvolume name the snapshot may create: one path component, not . or .., within btrfs's limit. */
static int subvol_name_ok(const char *name) {
  size_t n = strlen(name);
  return n > 0 && n <= BTRFS_SUBVOL_NAME_MAX && !strchr(name, '/') && strcmp(name, ".") != 0 &&
         strcmp(name, "..") != 0;
}

/* A byte count: 1 to 19 decimal digits, not zero (no sign, no suffix, no overflow). */
static int parse_bytes(const char *v, uint64_t *out) {
  size_t n = strlen(v);
  if (n == 0 || n > 19 || strspn(v, "0123456789") != n) return -1;
  uint64_t x = 0;
  for (size_t i = 0; i < n; i++) x = x * 10 + (uint64_t)(v[i] - '0');
  if (x == 0) return -1;
  *out = x;
  return 0;
}

/* Caps subvolume `name` in dir fd `d` (a snapshot just made there); 0 or an errno. */
static int limit_new_subvolume(int d, const char *name, uint64_t bytes) {
  /* O_NOFOLLOW and the inode check: only the root of a subvolume, never what a link points at */
  int v = openat(d, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (v < 0) return errno;
  struct stat st;
  int e = 0;
  if (fstat(v, &st) < 0) e = errno;
  else if (st.st_ino != 256) e = EINVAL; /* a subvolume's root directory is always inode 256 */
  if (!e) {
    struct btrfs_ioctl_qgroup_limit_args la;
    memset(&la, 0, sizeof la);
    la.qgroupid = 0; /* the qgroup of the subvolume the fd is on */
    la.lim.flags = BTRFS_QGROUP_LIMIT_MAX_RFER;
    la.lim.max_rfer = bytes;
    if (ioctl(v, BTRFS_IOC_QGROUP_LIMIT, &la) < 0) e = errno;
  }
  close(v);
  return e;
}

static void do_snap(const char *id, char **w, int n) {
  const char *src = NULL, *dst = NULL, *name = NULL;
  int ro = 0, limited = 0;
  uint64_t limit = 0;
  for (int i = 0; i < n; i++) {
    char *v = w[i] + 1;
    switch (w[i][0]) {
    case 's': src = v; break;
    case 'd': dst = v; break;
    case 'n': name = v; break;
    case 'r': ro = 1; break;
    case 'q':
      if (parse_bytes(v, &limit) < 0) {
        reply("%s err parse %d\n", id, EINVAL);
        return;
      }
      limited = 1;
      break;
    default: reply("%s err parse %d\n", id, EINVAL); return;
    }
  }
  if (!src || !dst || !name || !subvol_name_ok(name)) {
    reply("%s err parse %d\n", id, EINVAL);
    return;
  }
  int s = open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (s < 0) {
    reply("%s err source %d\n", id, errno);
    return;
  }
  int d = open(dst, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (d < 0) {
    reply("%s err dest %d\n", id, errno);
    close(s);
    return;
  }
  struct btrfs_ioctl_vol_args_v2 args;
  memset(&args, 0, sizeof args);
  args.fd = s;
  if (ro) args.flags |= BTRFS_SUBVOL_RDONLY;
  memcpy(args.name, name, strlen(name));
  int r = ioctl(d, BTRFS_IOC_SNAP_CREATE_V2, &args);
  int e = errno;
  close(s);
  if (r < 0) {
    close(d);
    reply("%s err ioctl %d\n", id, e);
    return;
  }
  if (limited && (e = limit_new_subvolume(d, name, limit)) != 0) {
    /* undo: bad input or a pool without quotas changes nothing */
    struct btrfs_ioctl_vol_args del;
    memset(&del, 0, sizeof del);
    memcpy(del.name, name, strlen(name));
    if (ioctl(d, BTRFS_IOC_SNAP_DESTROY, &del) < 0) {
      int de = errno;
      close(d);
      reply("%s err limit-undo %d\n", id, de);
      return;
    }
    close(d);
    reply("%s err limit %d\n", id, e);
    return;
  }
  close(d);
  reply("%s ok\n", id);
}

static void do_destroy(const char *id, char **w, int n) {
  const char *dir = NULL, *name = NULL;
  for (int i = 0; i < n; i++) {
    char *v = w[i] + 1;
    switch (w[i][0]) {
    case 'd': dir = v; break;
    case 'n': name = v; break;
    default: reply("%s err parse %d\n", id, EINVAL); return;
    }
  }
  if (!dir || !name || !subvol_name_ok(name)) {
    reply("%s err parse %d\n", id, EINVAL);
    return;
  }
  int d = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (d < 0) {
    reply("%s err dest %d\n", id, errno);
    return;
  }
  struct btrfs_ioctl_vol_args del;
  memset(&del, 0, sizeof del);
  memcpy(del.name, name, strlen(name));
  int r = ioctl(d, BTRFS_IOC_SNAP_DESTROY, &del);
  int e = errno;
  close(d);
  if (r < 0) reply("%s err ioctl %d\n", id, e);
  else reply("%s ok\n", id);
}

static void do_squota(const char *id, char **w, int n) {
  if (n != 1 || w[0][0] != 'p') {
    reply("%s err parse %d\n", id, EINVAL);
    return;
  }
  int fd = open(w[0] + 1, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    reply("%s err open %d\n", id, errno);
    return;
  }
  struct btrfs_ioctl_quota_ctl_args qa;
  memset(&qa, 0, sizeof qa);
  qa.cmd = BTRFS_QUOTA_CTL_ENABLE_SIMPLE_QUOTA;
  int r = ioctl(fd, BTRFS_IOC_QUOTA_CTL, &qa);
  int e = errno;
  close(fd);
  if (r < 0) reply("%s err ioctl %d\n", id, e);
  else reply("%s ok\n", id);
}

static void handle(char *buf, uint32_t len) {
  char *w[MAX_WORDS];
  int n = 0;
  for (uint32_t i = 0; i < len && n < MAX_WORDS;) {
    w[n++] = buf + i;
    char *end = memchr(buf + i, 0, len - i);
    if (!end) {
      reply("? err parse %d\n", EINVAL);
      return;
    }
    i = (uint32_t)(end - buf) + 1;
  }
  if (n < 2 || n >= MAX_WORDS || strspn(w[0], "0123456789") != strlen(w[0]) || !*w[0]) {
    reply("? err parse %d\n", EINVAL);
    return;
  }
  for (int i = 2; i < n; i++) {
    if (!w[i][0]) {
      reply("%s err parse %d\n", w[0], EINVAL);
      return;
    }
  }
  if (strcmp(w[1], "start") == 0) do_start(w[0], w + 2, n - 2);
  else if (strcmp(w[1], "snap") == 0) do_snap(w[0], w + 2, n - 2);
  else if (strcmp(w[1], "destroy") == 0) do_destroy(w[0], w + 2, n - 2);
  else if (strcmp(w[1], "squota") == 0) do_squota(w[0], w + 2, n - 2);
  else reply("%s err parse %d\n", w[0], EINVAL);
}

static void reap(void) {
  int st;
  pid_t pid;
  while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
    for (int i = 0; i < nwatch; i++)
      if (watches[i].pid == pid) unwatch(i--);
    if (WIFEXITED(st)) reply("x %d %d -1\n", (int)pid, WEXITSTATUS(st));
    else if (WIFSIGNALED(st)) reply("x %d -1 %d\n", (int)pid, WTERMSIG(st));
  }
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, NULL);
  int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) return 125;
  char *buf = malloc(MAX_FRAME);
  if (!buf) return 125;
  for (;;) {
    struct pollfd fds[2 + MAX_WATCH] = {{.fd = 0, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
    int nw = nwatch;
    for (int i = 0; i < nw; i++) fds[2 + i] = (struct pollfd){.fd = watches[i].fd, .events = POLLIN};
    if (poll(fds, 2 + nw, -1) < 0) {
      if (errno == EINTR) continue;
      return 125;
    }
    /* from the last: unwatch moves the last watch into the freed place */
    for (int i = nw - 1; i >= 0; i--)
      if (fds[2 + i].revents & POLLIN) on_notify(i);
    if (fds[1].revents & POLLIN) {
      struct signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) == sizeof si) {
      }
      reap();
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      uint8_t h[4];
      if (read_full(0, h, 4) < 0) return 0; /* the agent is gone; children stay */
      uint32_t len = h[0] | h[1] << 8 | h[2] << 16 | (uint32_t)h[3] << 24;
      if (len > MAX_FRAME) return 125;
      if (read_full(0, buf, len) < 0) return 0;
      handle(buf, len);
      reap();
    }
  }
}
