/* measure: run one command and append "wall_s user_s sys_s maxrss_kib exit" to a file.
 *
 *   measure OUT CMD [ARGS...]
 *   measure --client-rss OUT CMD [ARGS...]
 *
 * CPU time and peak RSS come from wait4(2), so they cover the command and every descendant it
 * waited for (user and system time are summed over the tree; peak RSS is the largest single
 * process in it). Microsecond resolution, unlike /usr/bin/time's centiseconds, which are too
 * coarse for runs of a few milliseconds. stdin, stdout and stderr go to /dev/null.
 *
 * --client-rss appends "client_kib server_kib exit" instead: the peak RSS (VmHWM, read when
 * each process exits, under ptrace) of the largest process that is not the git server side,
 * and of the largest one that is (`upload-pack`, `pack-objects`). Over a local-path remote
 * both pullstart and git start the server side as their own child, so wait4's figure is
 * often git's `pack-objects`, not the tool. Tracing slows the run a little: this mode is for
 * memory only, never for timing. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Starts cmd with stdin, stdout and stderr on /dev/null; traced: stopped, for the caller to
 * trace, before it execs. Returns its pid, or -1. */
static pid_t start(char **cmd, int traced) {
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return -1;
    }
    if (pid == 0) {
        int fd = open("/dev/null", O_RDWR);
        if (fd >= 0) {
            dup2(fd, 0);
            dup2(fd, 1);
            dup2(fd, 2);
        }
        if (traced) {
            if (ptrace(PTRACE_TRACEME, 0, 0, 0) != 0) _exit(126); /* tracing not permitted */
            raise(SIGSTOP);
        }
        execvp(cmd[0], cmd);
        _exit(127);
    }
    return pid;
}

/* Whether the process's command line names git's server side. */
static int is_server(pid_t pid) {
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    for (size_t i = 0; i < n; i++)
        if (buf[i] == 0) buf[i] = ' ';
    buf[n] = 0;
    return strstr(buf, "upload-pack") != NULL || strstr(buf, "pack-objects") != NULL;
}

/* VmHWM of a process, KiB; 0 when it has no memory map any more. */
static long vm_hwm(pid_t pid) {
    char path[64], line[256];
    long kib = 0;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld", &kib) == 1) break;
    fclose(f);
    return kib;
}

static int client_rss(const char *out_path, char **cmd) {
    FILE *out = fopen(out_path, "a");
    if (!out) {
        perror(out_path);
        return 2;
    }
    pid_t pid = start(cmd, 1);
    if (pid < 0) return 2;
    int status = 0, code = 2;
    waitpid(pid, &status, 0); /* the SIGSTOP above */
    if (!WIFSTOPPED(status)) {
        fprintf(stderr, "measure: cannot trace the command (ptrace not permitted?)\n");
        return 2;
    }
    ptrace(PTRACE_SETOPTIONS, pid, 0,
           PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK | PTRACE_O_TRACECLONE | PTRACE_O_TRACEEXEC |
               PTRACE_O_TRACEEXIT | PTRACE_O_EXITKILL);
    ptrace(PTRACE_CONT, pid, 0, 0);
    long client = 0, server = 0;
    for (;;) {
        pid_t w = waitpid(-1, &status, __WALL);
        if (w < 0) break; /* no traced process left */
        if (WIFEXITED(status) || WIFSIGNALED(status)) {
            if (w == pid) code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            continue;
        }
        if (!WIFSTOPPED(status)) continue;
        int sig = WSTOPSIG(status), event = status >> 16;
        if (event == PTRACE_EVENT_EXIT) {
            long hwm = vm_hwm(w);
            if (is_server(w)) {
                if (hwm > server) server = hwm;
            } else if (hwm > client) {
                client = hwm;
            }
            ptrace(PTRACE_CONT, w, 0, 0);
        } else if (event != 0 || sig == SIGSTOP || sig == SIGTRAP) {
            /* fork/clone/exec events and the first stop of a new traced process */
            ptrace(PTRACE_CONT, w, 0, 0);
        } else {
            ptrace(PTRACE_CONT, w, 0, sig); /* deliver the signal */
        }
    }
    fprintf(out, "%ld %ld %d\n", client, server, code);
    fclose(out);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 4 && strcmp(argv[1], "--client-rss") == 0) return client_rss(argv[2], argv + 3);
    if (argc < 3) {
        fprintf(stderr, "usage: measure [--client-rss] OUT CMD [ARGS...]\n");
        return 2;
    }
    FILE *out = fopen(argv[1], "a");
    if (!out) {
        perror(argv[1]);
        return 2;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = start(argv + 2, 0);
    if (pid < 0) return 2;
    int status = 0;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0) {
        perror("wait4");
        return 2;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double wall = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    double user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
    double sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    fprintf(out, "%.6f %.6f %.6f %ld %d\n", wall, user, sys, ru.ru_maxrss, code);
    fclose(out);
    return 0;
}
