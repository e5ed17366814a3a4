/* bench/create-floor.c: what this machine's kernel charges to create one
 * small file, with no HTTP and no Rust: the floor under any client's
 * "CPU per file to disk".
 *   cc -O2 bench/create-floor.c -o /tmp/create-floor
 *   mkdir -p /tmp/floor && chattr +T /tmp/floor
 *   for m in 0 1 2; do /tmp/create-floor $m /tmp/floor/r$m-$RANDOM 50000; done
 * mode 0: open(O_CREAT)+write+close (not atomic)
 * mode 1: O_TMPFILE+write+linkat+close (atomic; what bulkget does)
 * mode 2: temp+write+close+rename (atomic, the usual way)
 * mode 3: as 1 but linkat(fd, "", AT_EMPTY_PATH) (needs CAP_DAC_READ_SEARCH;
 *         bulkget uses it where it may) */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double cpu(void) {
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return r.ru_utime.tv_sec + r.ru_stime.tv_sec + (r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: create-floor MODE DIR N\n");
        return 2;
    }
    int mode = atoi(argv[1]), n = atoi(argv[3]);
    mkdir(argv[2], 0755);
    int d = open(argv[2], O_DIRECTORY | O_RDONLY);
    if (d < 0) { perror(argv[2]); return 1; }
    char buf[100], name[64], tmp[64];
    memset(buf, 'x', sizeof buf);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    double c0 = cpu();
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "f%09d", i);
        if (mode == 0) {
            int fd = openat(d, name, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0644);
            if (fd < 0 || write(fd, buf, 100) != 100) { perror(name); return 1; }
            close(fd);
        } else if (mode == 1) {
            int fd = openat(d, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
            if (fd < 0 || write(fd, buf, 100) != 100) { perror(name); return 1; }
            char p[64];
            snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
            if (linkat(AT_FDCWD, p, d, name, AT_SYMLINK_FOLLOW)) { perror("linkat"); return 1; }
            close(fd);
        } else if (mode == 3) {
            int fd = openat(d, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
            if (fd < 0 || write(fd, buf, 100) != 100) { perror(name); return 1; }
            if (linkat(fd, "", d, name, AT_EMPTY_PATH)) { perror("linkat"); return 1; }
            close(fd);
        } else {
            snprintf(tmp, sizeof tmp, ".t%d", i);
            int fd = openat(d, tmp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
            if (fd < 0 || write(fd, buf, 100) != 100) { perror(tmp); return 1; }
            close(fd);
            if (renameat(d, tmp, d, name)) { perror("rename"); return 1; }
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double w = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
    printf("mode %d: %.0f files/s, %.1f us CPU per file\n", mode, n / w, (cpu() - c0) / n * 1e6);
    return 0;
}
