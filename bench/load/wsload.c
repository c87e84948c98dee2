/*
 * wsload: the WebSocket load generator behind bench/run.py.
 *
 * One single-threaded epoll loop drives many connections. It does its own HTTP/1.1
 * upgrade (checks the 101 and Sec-WebSocket-Accept), sends client frames that were built
 * and masked once before the run (a ring of distinct messages, so the hot path is a
 * writev of ready bytes), and checks every echo byte for byte and in order while it
 * streams in. It reports its own CPU time (getrusage) next to the wall time, so a
 * saturated client shows up as client_cpu_pct near 100 instead of as a slow server.
 *
 * Modes (one JSON object on stdout at the end; errors on stderr, exit status 2):
 *   echo     -c N connections, each keeping -w messages of -s bytes in flight (text, or
 *            binary with -b) for -W warm-up + -d measured seconds, or -n messages each.
 *            msgs/s, MB/s (10^6 bytes of payload echoed), latency p50/p99 per message
 *            (send to complete echo; pure round-trip latency when -w 1).
 *   connect  -c K connections in flight, each: TCP connect, upgrade, one -s byte message,
 *            its echo, close handshake, close. Reports completed connections/s and the
 *            p50/p99 of the whole lifecycle.
 *   idle     open -c N connections (-k handshakes in flight), print a "ready" JSON line,
 *            hold them until a line (or EOF) arrives on stdin or --hold-s passes, then
 *            close them all with a close handshake. --deflate offers permessage-deflate
 *            (the client never sends or accepts compressed data; handshake only).
 *   fanout   -c N subscriber connections (path --sub-path, default /sub) and one publisher
 *            (--pub-path, default /pub). A subscriber counts as subscribed once the server
 *            sends it the 2-byte text message "ok"; when all N have, the publisher sends
 *            messages of -s bytes (text, or binary with -b) keeping -w broadcasts in flight
 *            (a broadcast is done when the last subscriber has it) for -W warm-up + -d
 *            measured seconds (or until -n broadcasts). Each payload starts with
 *            "%016llx %016llx " (sequence number, CLOCK_MONOTONIC send time in ns), then
 *            'a'..'z' repeated; every subscriber checks length, content and order.
 *            Reports broadcasts/s, deliveries/s (broadcasts x N), broadcast latency
 *            (publisher's send -> last subscriber's receipt) p50/p99, lost and
 *            out-of-order receipts (must be 0), and the CPU time of every client process.
 *            --procs P puts the subscribers in P forked processes (a slice of N/P each;
 *            0 = in the publisher's process); they share counters through shared memory
 *            and wake the publisher through an eventfd. Prints {"event": "measure_start"}
 *            and {"event": "measure_end"} lines as the measured window opens and closes.
 *   subscribe  the subscribers of fanout without a publisher (for an external one, e.g. a
 *            scale test publishing through the server): open -c N (-k handshakes in flight
 *            per process), print a "ready" line once all have their "ok", then count and
 *            check receipts (same payload format, sequence numbers from 0, at most 4096)
 *            until a line on stdin or --hold-s; reports per-broadcast completion latency,
 *            receipts, lost and out-of-order. --progress-s S prints progress on stderr.
 *   --src-addrs A-B (or A,B,C): bind each client socket to one of these IPv4 source
 *            addresses, round robin (IP_BIND_ADDRESS_NO_PORT, so each address has its own
 *            ~28k ephemeral ports per server port): 127.0.0.1-127.0.0.8.
 *
 * Build: gcc -O2 -Wall -o wsload wsload.c     (bench/load/Makefile)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------- SHA-1 */
/* RFC 3174, only for Sec-WebSocket-Accept (RFC 6455 §4.2.2). */
typedef struct {
    uint32_t h[5];
    uint64_t len;
    uint8_t buf[64];
    size_t n;
} sha1_ctx;

static uint32_t rol(uint32_t x, int k) { return (x << k) | (x >> (32 - k)); }

static void sha1_block(sha1_ctx *c, const uint8_t *p) {
    uint32_t w[80], a, b, d, e, f, k, t, cc;
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 80; i++) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    a = c->h[0]; b = c->h[1]; cc = c->h[2]; d = c->h[3]; e = c->h[4];
    for (int i = 0; i < 80; i++) {
        if (i < 20) { f = (b & cc) | (~b & d); k = 0x5A827999; }
        else if (i < 40) { f = b ^ cc ^ d; k = 0x6ED9EBA1; }
        else if (i < 60) { f = (b & cc) | (b & d) | (cc & d); k = 0x8F1BBCDC; }
        else { f = b ^ cc ^ d; k = 0xCA62C1D6; }
        t = rol(a, 5) + f + e + k + w[i];
        e = d; d = cc; cc = rol(b, 30); b = a; a = t;
    }
    c->h[0] += a; c->h[1] += b; c->h[2] += cc; c->h[3] += d; c->h[4] += e;
}

static void sha1(const uint8_t *data, size_t len, uint8_t out[20]) {
    sha1_ctx c = {{0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0}, 0, {0}, 0};
    c.len = len;
    while (len >= 64) { sha1_block(&c, data); data += 64; len -= 64; }
    memcpy(c.buf, data, len);
    c.n = len;
    c.buf[c.n++] = 0x80;
    if (c.n > 56) { memset(c.buf + c.n, 0, 64 - c.n); sha1_block(&c, c.buf); c.n = 0; }
    memset(c.buf + c.n, 0, 56 - c.n);
    uint64_t bits = c.len * 8;
    for (int i = 0; i < 8; i++) c.buf[63 - i] = (uint8_t)(bits >> (8 * i));
    sha1_block(&c, c.buf);
    for (int i = 0; i < 5; i++) {
        out[4 * i] = c.h[i] >> 24; out[4 * i + 1] = c.h[i] >> 16;
        out[4 * i + 2] = c.h[i] >> 8; out[4 * i + 3] = c.h[i];
    }
}

static void base64(const uint8_t *in, size_t n, char *out) {
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i = 0, o = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = tbl[v >> 18]; out[o++] = tbl[(v >> 12) & 63];
        out[o++] = tbl[(v >> 6) & 63]; out[o++] = tbl[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
        out[o++] = tbl[v >> 18]; out[o++] = tbl[(v >> 12) & 63];
        out[o++] = i + 1 < n ? tbl[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    out[o] = 0;
}

/* ------------------------------------------------------------------------ options */
enum { MODE_ECHO, MODE_CONNECT, MODE_IDLE, MODE_FANOUT, MODE_SUBSCRIBE };
static struct {
    int mode;
    const char *host, *path;
    int port;
    int conns;          /* echo/idle: connections; connect: in flight */
    long long nmsgs;    /* echo: messages per connection, 0 = until the duration ends */
    size_t size;
    int binary, window, deflate, handshakes_in_flight;
    double duration_s, warmup_s, hold_s, timeout_s;
    const char *sub_path, *pub_path;
    int procs;
    double stall_s, progress_s;
} opt = {MODE_ECHO, "127.0.0.1", "/", 0, 1, 0, 32, 0, 1, 0, 64, 5.0, 1.0, 120.0, 0,
         "/sub", "/pub", 0, 5.0, 0};

/* ------------------------------------------------------------------------ helpers */
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double cpu_user_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6;
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec * 1e-6;
}

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "wsload: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng(void) { /* xorshift64*: payload bytes and keys, reproducible */
    rng_state ^= rng_state >> 12; rng_state ^= rng_state << 25; rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) die("out of memory (%zu bytes)", n);
    return p;
}

/* ------------------------------------------------------------ pre-built messages */
/* A ring of R distinct messages: R frames masked once up front, and their plain payloads
 * to check echoes against. Consecutive messages differ, so a reordered echo fails. */
typedef struct {
    uint8_t *frame;   /* header + mask key + masked payload: written as is */
    size_t frame_len;
    uint8_t *payload; /* what the echo must contain */
} msg_t;
static msg_t *ring;
static size_t ring_n;

static size_t build_frame(uint8_t *out, int opcode, const uint8_t *payload, size_t n,
                          const uint8_t key[4]) {
    size_t h = 0;
    out[h++] = 0x80 | opcode;
    if (n < 126) out[h++] = 0x80 | (uint8_t)n;
    else if (n < 65536) { out[h++] = 0x80 | 126; out[h++] = n >> 8; out[h++] = n & 255; }
    else { out[h++] = 0x80 | 127; for (int i = 7; i >= 0; i--) out[h++] = (uint8_t)(n >> (8 * i)); }
    memcpy(out + h, key, 4);
    h += 4;
    for (size_t i = 0; i < n; i++) out[h + i] = payload[i] ^ key[i & 3];
    return h + n;
}

static void build_ring(void) {
    size_t budget = 16u << 20;
    ring_n = opt.size ? budget / opt.size : 64;
    if (ring_n > 64) ring_n = 64;
    if (ring_n < 2) ring_n = 2;
    ring = xmalloc(ring_n * sizeof *ring);
    for (size_t m = 0; m < ring_n; m++) {
        uint8_t *p = xmalloc(opt.size);
        if (opt.binary) {
            for (size_t i = 0; i < opt.size; i++) p[i] = (uint8_t)(rng() >> 56);
        } else { /* printable ASCII, valid UTF-8; starts with the message number in hex */
            char tag[17];
            int t = snprintf(tag, sizeof tag, "%zx:", m);
            for (size_t i = 0; i < opt.size; i++)
                p[i] = i < (size_t)t ? (uint8_t)tag[i] : (uint8_t)('A' + (m * 7 + i) % 26);
        }
        uint64_t k = rng();
        uint8_t key[4] = {(uint8_t)k, (uint8_t)(k >> 8), (uint8_t)(k >> 16), (uint8_t)(k >> 24)};
        ring[m].payload = p;
        ring[m].frame = xmalloc(opt.size + 14);
        ring[m].frame_len = build_frame(ring[m].frame, opt.binary ? 2 : 1, p, opt.size, key);
    }
}

/* -------------------------------------------------------------------- connections */
enum { ST_FREE, ST_CONNECTING, ST_HANDSHAKE, ST_OPEN, ST_CLOSING };

typedef struct {
    const uint8_t *p;
    size_t len, off;
    uint8_t *owned; /* freed once written (handshake request, pong, close frame) */
} outq_t;

enum { ROLE_ECHO, ROLE_SUB, ROLE_PUB };
#define FAN_HDR 34 /* "%016llx %016llx ": sequence number, send time (ns) */

typedef struct {
    int fd, state, id;
    int role, gid;          /* gid: global connection number (source-address choice) */
    int want_out;           /* EPOLLOUT registered */
    outq_t *q;              /* ring of pending writes */
    int qcap, qhead, qlen;
    char key[32];
    char *hbuf;             /* handshake response until its blank line */
    size_t hlen;
    /* frame parser */
    uint8_t hdr[14];
    int hdr_len, in_frame, f_op, f_fin, m_op;
    uint64_t f_rem, m_off;
    uint8_t ctrl[125];
    int ctrl_len;
    /* message accounting */
    long long sent, recvd;
    double *sent_at;        /* ring of window send times */
    double started;         /* connect mode: lifecycle start */
    /* fanout subscriber */
    int subscribed;
    uint8_t mhead[FAN_HDR];
    long long next_seq, f_received, f_lost, f_ooo;
} conn_t;

static conn_t *conns;
static int nconns;
static int epfd;
static struct sockaddr_storage addr;
static socklen_t addrlen;
static char host_header[300];

static int phase; /* see PH_* */
enum { PH_SETUP, PH_WARMUP, PH_MEASURE, PH_DRAIN, PH_CLOSE, PH_HOLD };

static long long measured_msgs, open_count, deflate_accepted, closes_without_frame, started_conns;
static long long completed_conns, handshakes_done;
static uint32_t *lat_ns;
static size_t lat_n, lat_cap;

static void record_latency(double seconds) {
    if (lat_n == lat_cap) {
        if (lat_cap >= (64u << 20)) return; /* 256 MB of samples is plenty */
        lat_cap = lat_cap ? lat_cap * 2 : 1 << 16;
        lat_ns = realloc(lat_ns, lat_cap * sizeof *lat_ns);
        if (!lat_ns) die("out of memory (latencies)");
    }
    double ns = seconds * 1e9;
    lat_ns[lat_n++] = ns > 4e9 ? 4000000000u : (uint32_t)ns;
}

static void conn_fail(conn_t *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "wsload: connection %d: ", c->id);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

static void set_events(conn_t *c, int want_out) {
    if (c->want_out == want_out) return;
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.u32 = c->id};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) conn_fail(c, "epoll_ctl: %s", strerror(errno));
    c->want_out = want_out;
}

static void enqueue(conn_t *c, const uint8_t *p, size_t len, uint8_t *owned) {
    if (c->qlen == c->qcap) {
        int ncap = c->qcap * 2;
        outq_t *nq = xmalloc(ncap * sizeof *nq);
        for (int i = 0; i < c->qlen; i++) nq[i] = c->q[(c->qhead + i) % c->qcap];
        free(c->q);
        c->q = nq; c->qcap = ncap; c->qhead = 0;
    }
    c->q[(c->qhead + c->qlen) % c->qcap] = (outq_t){p, len, 0, owned};
    c->qlen++;
}

static void flush(conn_t *c) {
    while (c->qlen) {
        struct iovec iov[64];
        int n = 0;
        for (; n < c->qlen && n < 64; n++) {
            outq_t *e = &c->q[(c->qhead + n) % c->qcap];
            iov[n].iov_base = (void *)(e->p + e->off);
            iov[n].iov_len = e->len - e->off;
        }
        ssize_t w = writev(c->fd, iov, n);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            if (errno == EINTR) continue;
            conn_fail(c, "write: %s", strerror(errno));
        }
        while (w > 0) {
            outq_t *e = &c->q[c->qhead];
            size_t left = e->len - e->off;
            if ((size_t)w < left) { e->off += w; w = 0; break; }
            w -= left;
            free(e->owned);
            c->qhead = (c->qhead + 1) % c->qcap;
            c->qlen--;
        }
    }
    set_events(c, c->qlen > 0);
}

static void send_control(conn_t *c, int opcode, const uint8_t *payload, size_t n) {
    uint8_t *f = xmalloc(n + 14);
    uint64_t k = rng();
    uint8_t key[4] = {(uint8_t)k, (uint8_t)(k >> 8), (uint8_t)(k >> 16), (uint8_t)(k >> 24)};
    size_t len = build_frame(f, opcode, payload, n, key);
    enqueue(c, f, len, f);
}

static void send_close(conn_t *c) {
    static const uint8_t normal[2] = {0x03, 0xE8}; /* 1000 */
    send_control(c, 8, normal, 2);
    c->state = ST_CLOSING;
    flush(c);
}

/* echo mode: keep `window` messages in flight */
static void pump(conn_t *c) {
    if (phase != PH_WARMUP && phase != PH_MEASURE) return;
    int queued = 0;
    while (c->sent - c->recvd < opt.window && (!opt.nmsgs || c->sent < opt.nmsgs)) {
        msg_t *m = &ring[c->sent % ring_n];
        c->sent_at[c->sent % opt.window] = now_s();
        enqueue(c, m->frame, m->frame_len, NULL);
        c->sent++;
        queued = 1;
    }
    if (queued) flush(c);
}

static void conn_close_fd(conn_t *c) {
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    for (int i = 0; i < c->qlen; i++) free(c->q[(c->qhead + i) % c->qcap].owned);
    c->qlen = 0; c->qhead = 0;
    c->fd = -1;
    c->state = ST_FREE;
    c->want_out = 0;
    free(c->hbuf);
    c->hbuf = NULL;
    open_count--;
}

static void start_conn(conn_t *c);

static void conn_finished(conn_t *c) {
    /* the close handshake is complete (or the server closed after our close frame) */
    double t = now_s();
    conn_close_fd(c);
    if (opt.mode == MODE_CONNECT) {
        if (phase == PH_MEASURE) { completed_conns++; record_latency(t - c->started); }
        if (phase == PH_WARMUP || phase == PH_MEASURE) start_conn(c);
    }
}

static void on_message_done(conn_t *c) {
    /* a complete data message has been echoed and checked */
    double t = now_s();
    if (phase == PH_MEASURE && opt.mode == MODE_ECHO) {
        measured_msgs++;
        record_latency(t - c->sent_at[c->recvd % opt.window]);
    }
    c->recvd++;
    if (opt.mode == MODE_ECHO) pump(c);
    else if (opt.mode == MODE_CONNECT) send_close(c);
    else conn_fail(c, "unexpected message in idle mode");
}

static void sub_message_done(conn_t *c);

static void on_frame_done(conn_t *c) {
    int op = c->f_op;
    if (op >= 8) {
        if (op == 9) { send_control(c, 10, c->ctrl, c->ctrl_len); flush(c); } /* ping -> pong */
        else if (op == 8) {
            if (c->state == ST_CLOSING) { conn_finished(c); return; }
            int code = c->ctrl_len >= 2 ? c->ctrl[0] << 8 | c->ctrl[1] : 1005;
            conn_fail(c, "server sent close %d (%.*s) while open", code,
                      c->ctrl_len > 2 ? c->ctrl_len - 2 : 0, (char *)c->ctrl + 2);
        }
        c->ctrl_len = 0;
        return;
    }
    if (c->f_fin && c->role == ROLE_SUB) {
        sub_message_done(c);
        c->m_off = 0;
        c->m_op = 0;
        return;
    }
    if (c->f_fin) {
        if (c->m_off != opt.size)
            conn_fail(c, "echo %lld has %llu bytes, sent %zu", c->recvd,
                      (unsigned long long)c->m_off, opt.size);
        c->m_off = 0;
        c->m_op = 0;
        on_message_done(c);
    }
}

static void sub_payload(conn_t *c, const uint8_t *p, size_t take);

/* Feed server bytes: frame headers are gathered in hdr[], payloads are compared with the
 * expected echo as they stream past (nothing is buffered but control payloads). */
static void feed(conn_t *c, const uint8_t *p, size_t n) {
    while (n > 0 && c->state >= ST_OPEN) {
        if (!c->in_frame) {
            c->hdr[c->hdr_len++] = *p++;
            n--;
            if (c->hdr_len < 2) continue;
            int len7 = c->hdr[1] & 0x7F;
            int need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0);
            if (c->hdr[1] & 0x80) conn_fail(c, "server frame is masked (RFC 6455 5.1)");
            if (c->hdr_len < need) continue;
            uint64_t len = len7;
            if (len7 == 126) len = (uint64_t)c->hdr[2] << 8 | c->hdr[3];
            else if (len7 == 127) { len = 0; for (int i = 2; i < 10; i++) len = len << 8 | c->hdr[i]; }
            int op = c->hdr[0] & 0x0F;
            if (c->hdr[0] & 0x70) conn_fail(c, "RSV bits set (0x%02x): compressed frame?", c->hdr[0]);
            c->hdr_len = 0;
            c->f_op = op;
            c->f_fin = c->hdr[0] >> 7;
            c->f_rem = len;
            c->in_frame = 1;
            if (op >= 8) {
                if (len > 125 || !c->f_fin) conn_fail(c, "bad control frame");
                c->ctrl_len = 0;
            } else if (op == 0) {
                if (!c->m_op) conn_fail(c, "continuation without a message");
            } else {
                if (c->m_op) conn_fail(c, "new message inside a fragmented one");
                int want = opt.binary && !(c->role == ROLE_SUB && !c->subscribed) ? 2 : 1;
                if (op != want) conn_fail(c, "data opcode %d, expected %d", op, want);
                if (c->role == ROLE_PUB) conn_fail(c, "the publisher received a data message");
                if (c->role == ROLE_ECHO && (c->state != ST_OPEN || c->recvd >= c->sent))
                    conn_fail(c, "unsolicited data message");
                c->m_op = op;
            }
            if (len == 0) { c->in_frame = 0; on_frame_done(c); }
            continue;
        }
        size_t take = c->f_rem < n ? (size_t)c->f_rem : n;
        if (c->f_op >= 8) {
            memcpy(c->ctrl + c->ctrl_len, p, take);
            c->ctrl_len += take;
        } else if (c->role == ROLE_SUB) {
            sub_payload(c, p, take);
        } else {
            if (c->m_off + take > opt.size)
                conn_fail(c, "echo %lld longer than %zu bytes", c->recvd, opt.size);
            const uint8_t *want = ring[c->recvd % ring_n].payload + c->m_off;
            if (memcmp(p, want, take) != 0) {
                size_t i = 0;
                while (p[i] == want[i]) i++;
                conn_fail(c, "echo %lld differs at byte %llu (order or content)", c->recvd,
                          (unsigned long long)(c->m_off + i));
            }
            c->m_off += take;
        }
        p += take; n -= take; c->f_rem -= take;
        if (c->f_rem == 0) { c->in_frame = 0; on_frame_done(c); }
    }
}

static const char *find_header(const char *head, const char *name) {
    size_t nl = strlen(name);
    for (const char *l = strstr(head, "\r\n"); l && l[2] != '\r'; l = strstr(l + 2, "\r\n")) {
        if (strncasecmp(l + 2, name, nl) == 0 && l[2 + nl] == ':') {
            const char *v = l + 3 + nl;
            while (*v == ' ' || *v == '\t') v++;
            return v;
        }
    }
    return NULL;
}

static void on_handshake_bytes(conn_t *c, const uint8_t *p, size_t n) {
    if (!c->hbuf) c->hbuf = xmalloc(8192);
    size_t prior = c->hlen;
    if (c->hlen + n > 8191) {
        /* the head is at most a few hundred bytes; more is frames after the 101 */
        size_t room = 8191 - c->hlen;
        memcpy(c->hbuf + c->hlen, p, room);
        c->hlen += room;
    } else {
        memcpy(c->hbuf + c->hlen, p, n);
        c->hlen += n;
    }
    c->hbuf[c->hlen] = 0;
    char *end = strstr(c->hbuf, "\r\n\r\n");
    if (!end) {
        if (c->hlen >= 8191) conn_fail(c, "handshake response head too long");
        return;
    }
    size_t head_len = end + 4 - c->hbuf;
    size_t extra_off = head_len - prior; /* offset of the first frame byte in p */
    end[2] = 0;
    if (strncmp(c->hbuf, "HTTP/1.1 101", 12) != 0) {
        char *eol = strstr(c->hbuf, "\r\n");
        if (eol) *eol = 0;
        conn_fail(c, "handshake refused: %s", c->hbuf);
    }
    char buf[128];
    uint8_t digest[20];
    char expect[32];
    int kl = snprintf(buf, sizeof buf, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", c->key);
    sha1((uint8_t *)buf, kl, digest);
    base64(digest, 20, expect);
    const char *acc = find_header(c->hbuf, "sec-websocket-accept");
    if (!acc || strncmp(acc, expect, 28) != 0) conn_fail(c, "bad Sec-WebSocket-Accept");
    const char *ext = find_header(c->hbuf, "sec-websocket-extensions");
    if (ext) {
        const char *eol = strstr(ext, "\r\n");
        if (memmem(ext, eol ? (size_t)(eol - ext) : strlen(ext), "permessage-deflate", 18)) {
            if (!opt.deflate) conn_fail(c, "server negotiated an extension we did not offer");
            deflate_accepted++;
        }
    }
    free(c->hbuf);
    c->hbuf = NULL;
    c->hlen = 0;
    c->state = ST_OPEN;
    handshakes_done++;
    if (opt.mode == MODE_CONNECT) {
        msg_t *m = &ring[c->sent % ring_n];
        c->sent_at[c->sent % opt.window] = now_s();
        enqueue(c, m->frame, m->frame_len, NULL);
        c->sent++;
        flush(c);
    } else if (opt.mode == MODE_ECHO) {
        pump(c);
    }
    /* fanout: a subscriber waits for its "ok", the publisher for all of them */
    if (extra_off < n) feed(c, p + extra_off, n - extra_off);
}

static struct in_addr *src_addrs;
static int nsrc;

static void bind_source(int fd, conn_t *c) {
    int one = 1;
    /* the port is chosen at connect(), per (source, destination): ~28k per source address */
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr = src_addrs[c->gid % nsrc];
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        conn_fail(c, "bind %s: %s", inet_ntoa(sa.sin_addr), strerror(errno));
}

static void parse_src_addrs(const char *arg) {
    /* "A-B" (inclusive range of IPv4 addresses) or "A,B,C" */
    char buf[512];
    snprintf(buf, sizeof buf, "%s", arg);
    char *dash = strchr(buf, '-');
    if (dash) {
        *dash = 0;
        struct in_addr a, b;
        if (!inet_aton(buf, &a) || !inet_aton(dash + 1, &b)) die("bad --src-addrs %s", arg);
        uint32_t lo = ntohl(a.s_addr), hi = ntohl(b.s_addr);
        if (hi < lo || hi - lo > 65535) die("bad --src-addrs range %s", arg);
        nsrc = hi - lo + 1;
        src_addrs = xmalloc(nsrc * sizeof *src_addrs);
        for (int i = 0; i < nsrc; i++) src_addrs[i].s_addr = htonl(lo + i);
        return;
    }
    nsrc = 1;
    for (char *q = buf; *q; q++) nsrc += *q == ',';
    src_addrs = xmalloc(nsrc * sizeof *src_addrs);
    int i = 0;
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ","))
        if (!inet_aton(tok, &src_addrs[i++])) die("bad address %s in --src-addrs", tok);
    nsrc = i;
}

static void start_conn(conn_t *c) {
    int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket: %s (raise RLIMIT_NOFILE?)", strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (nsrc) bind_source(fd, c);
    c->fd = fd;
    c->state = ST_CONNECTING;
    c->hdr_len = c->in_frame = c->ctrl_len = 0;
    c->m_op = 0; c->m_off = 0; c->sent = c->recvd = 0;
    c->started = now_s();
    c->want_out = 1;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = c->id};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl: %s", strerror(errno));
    open_count++;
    started_conns++;
    if (connect(fd, (struct sockaddr *)&addr, addrlen) < 0 && errno != EINPROGRESS)
        conn_fail(c, "connect: %s", strerror(errno));
}

static void on_connected(conn_t *c) {
    int err = 0;
    socklen_t l = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
    if (err) conn_fail(c, "connect: %s", strerror(err));
    uint8_t raw[16];
    uint64_t a = rng(), b = rng();
    memcpy(raw, &a, 8);
    memcpy(raw + 8, &b, 8);
    base64(raw, 16, c->key);
    char *req = xmalloc(1024);
    int n = snprintf(req, 1024,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n",
                     c->role == ROLE_SUB ? opt.sub_path : c->role == ROLE_PUB ? opt.pub_path
                                                                            : opt.path,
                     host_header, c->key,
                     opt.deflate ? "Sec-WebSocket-Extensions: permessage-deflate; "
                                   "client_max_window_bits\r\n" : "");
    c->state = ST_HANDSHAKE;
    enqueue(c, (uint8_t *)req, n, (uint8_t *)req);
    flush(c);
}

static uint8_t rbuf[256 * 1024];

static void on_readable(conn_t *c) {
    ssize_t n = read(c->fd, rbuf, sizeof rbuf);
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) return;
        if (c->state == ST_CLOSING && errno == ECONNRESET) { closes_without_frame++; conn_finished(c); return; }
        conn_fail(c, "read: %s", strerror(errno));
    }
    if (n == 0) {
        if (c->state == ST_CLOSING) { closes_without_frame++; conn_finished(c); return; }
        conn_fail(c, "server closed the connection (state %d, %lld/%lld echoed)", c->state,
                  c->recvd, c->sent);
    }
    if (c->state == ST_HANDSHAKE) on_handshake_bytes(c, rbuf, n);
    else feed(c, rbuf, n);
}

/* ---------------------------------------------------------------------- reporting */
static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_us(double q) {
    if (!lat_n) return 0;
    size_t i = (size_t)(q * (lat_n - 1) + 0.5);
    return lat_ns[i] / 1000.0;
}

static void usage(void) {
    fprintf(stderr,
            "usage: wsload {echo|connect|idle|fanout|subscribe} -p PORT [-h HOST] [--path P]\n"
            "              [-c N] [-n M] [-s BYTES] [-b] [-w WINDOW] [-d SECONDS] [-W WARMUP_S]\n"
            "              [-k HANDSHAKES_IN_FLIGHT] [--deflate] [--hold-s S] [--timeout-s S]\n"
            "              [--src-addrs A-B|A,B,..]\n"
            "       fanout/subscribe: [--sub-path /sub] [--pub-path /pub] [--procs P]\n"
            "              [--stall-s S] [--progress-s S]   (-c: subscribers, -w: broadcasts\n"
            "              in flight, -n: broadcasts, -s: payload bytes, default 64)\n");
    exit(2);
}

static void raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* ------------------------------------------------------------------------ fan-out */
/* Shared between the publisher's process and the subscriber processes (MAP_SHARED,
 * created before fork). Slot s % FAN_SLOTS belongs to broadcast s: the publisher resets it
 * before sending s (at most -w broadcasts are in flight, far fewer than FAN_SLOTS), every
 * subscriber raises max_ns to its receipt time and then counts itself in; the one that
 * brings count to N wakes the publisher through the eventfd. */
#define FAN_SLOTS 4096
#define FAN_MAXPROCS 64
typedef struct {
    uint64_t max_ns, sent_ns; /* sent_ns: from the payload (subscribe mode) */
    uint32_t count, pad;
} slot_t;
typedef struct {
    double cpu_measure_start, cpu_measure_end, cpu_total;
    long long received, lost, ooo, closes_without_frame;
    int done;
} procstat_t;
typedef struct {
    int phase;
    long long ready, handshakes, delivered, published, max_seq;
    procstat_t proc[FAN_MAXPROCS + 1]; /* [0]: the publisher's process */
    slot_t slot[FAN_SLOTS];
} shm_t;
static shm_t *shm;
static int efd = -1;       /* eventfd: a broadcast completed */
static int nsubs_total;     /* N */
static int my_proc;         /* 0 = publisher's process, 1..P = subscriber processes */
static int my_subs;         /* subscribers this process owns: conns[0..my_subs) */
static int fan_pattern_ready;
static uint8_t fan_pattern[1 << 20];

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void fan_fill_pattern(void) {
    for (size_t i = 0; i < sizeof fan_pattern; i++) fan_pattern[i] = 'a' + i % 26;
    fan_pattern_ready = 1;
}

static void sub_payload(conn_t *c, const uint8_t *p, size_t take) {
    size_t limit = c->subscribed ? opt.size : 2;
    if (c->m_off + take > limit)
        conn_fail(c, "subscriber message %lld longer than %zu bytes", c->f_received, limit);
    if (!c->subscribed) {
        memcpy(c->mhead + c->m_off, p, take);
        c->m_off += take;
        return;
    }
    size_t off = c->m_off, i = 0;
    if (off < FAN_HDR) {
        size_t h = FAN_HDR - off < take ? FAN_HDR - off : take;
        memcpy(c->mhead + off, p, h);
        i = h;
    }
    if (i < take && memcmp(p + i, fan_pattern + off + i, take - i) != 0)
        conn_fail(c, "subscriber message %lld: payload differs from the pattern", c->f_received);
    c->m_off += take;
}

static unsigned long long hex16(const uint8_t *p, int *ok) {
    unsigned long long v = 0;
    for (int i = 0; i < 16; i++) {
        int ch = p[i], d;
        if (ch >= '0' && ch <= '9') d = ch - '0';
        else if (ch >= 'a' && ch <= 'f') d = ch - 'a' + 10;
        else { *ok = 0; return 0; }
        v = v << 4 | d;
    }
    return v;
}

static void sub_message_done(conn_t *c) {
    if (!c->subscribed) {
        if (c->m_off != 2 || memcmp(c->mhead, "ok", 2) != 0)
            conn_fail(c, "first message to a subscriber must be \"ok\" (subscribed)");
        c->subscribed = 1;
        __atomic_add_fetch(&shm->ready, 1, __ATOMIC_RELAXED);
        return;
    }
    if (c->m_off != opt.size)
        conn_fail(c, "subscriber message has %llu bytes, expected %zu",
                  (unsigned long long)c->m_off, opt.size);
    int ok = 1;
    long long seq = (long long)hex16(c->mhead, &ok);
    uint64_t sent_ns = hex16(c->mhead + 17, &ok);
    if (!ok || c->mhead[16] != ' ' || c->mhead[33] != ' ')
        conn_fail(c, "subscriber message without a sequence number header");
    uint64_t t = now_ns();
    c->f_received++;
    if (seq == c->next_seq) c->next_seq++;
    else if (seq > c->next_seq) { c->f_lost += seq - c->next_seq; c->next_seq = seq + 1; }
    else c->f_ooo++;
    if (opt.mode == MODE_SUBSCRIBE) {
        long long m = __atomic_load_n(&shm->max_seq, __ATOMIC_RELAXED);
        while (seq > m && !__atomic_compare_exchange_n(&shm->max_seq, &m, seq, 1,
                                                       __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {}
        if (seq >= FAN_SLOTS) return; /* counted, but no completion slot */
    }
    __atomic_add_fetch(&shm->delivered, 1, __ATOMIC_RELAXED);
    slot_t *s = &shm->slot[seq % FAN_SLOTS];
    if (opt.mode == MODE_SUBSCRIBE) __atomic_store_n(&s->sent_ns, sent_ns, __ATOMIC_RELAXED);
    uint64_t m = __atomic_load_n(&s->max_ns, __ATOMIC_RELAXED);
    while (t > m && !__atomic_compare_exchange_n(&s->max_ns, &m, t, 1, __ATOMIC_RELAXED,
                                                 __ATOMIC_RELAXED)) {}
    if (__atomic_add_fetch(&s->count, 1, __ATOMIC_ACQ_REL) == (uint32_t)nsubs_total) {
        uint64_t one = 1;
        if (write(efd, &one, 8) < 0 && errno != EAGAIN) die("eventfd write: %s", strerror(errno));
    }
}

/* the publisher: conns[my_subs] in process 0 (fanout mode only) */
static long long pub_sent, pub_done, pub_stalled;
static uint64_t pub_send_ns[FAN_SLOTS];
static double pub_last_done;

static void pub_pump(conn_t *c) {
    int queued = 0;
    while (pub_sent - pub_done < opt.window && (!opt.nmsgs || pub_sent < opt.nmsgs)) {
        long long seq = pub_sent;
        slot_t *s = &shm->slot[seq % FAN_SLOTS];
        __atomic_store_n(&s->max_ns, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&s->count, 0, __ATOMIC_RELEASE);
        uint8_t *payload = xmalloc(opt.size);
        uint64_t t = now_ns();
        char head[FAN_HDR + 1];
        snprintf(head, sizeof head, "%016llx %016llx ", (unsigned long long)seq,
                 (unsigned long long)t);
        memcpy(payload, head, FAN_HDR);
        memcpy(payload + FAN_HDR, fan_pattern + FAN_HDR, opt.size - FAN_HDR);
        uint8_t *f = xmalloc(opt.size + 14);
        uint64_t k = rng();
        uint8_t key[4] = {(uint8_t)k, (uint8_t)(k >> 8), (uint8_t)(k >> 16), (uint8_t)(k >> 24)};
        size_t len = build_frame(f, opt.binary ? 2 : 1, payload, opt.size, key);
        free(payload);
        pub_send_ns[seq % FAN_SLOTS] = t;
        enqueue(c, f, len, f);
        pub_sent++;
        queued = 1;
    }
    if (queued) flush(c);
}

static void fan_proc_stats(int measure_edge) {
    procstat_t *ps = &shm->proc[my_proc];
    if (measure_edge == 1) ps->cpu_measure_start = cpu_s();
    else if (measure_edge == 2) ps->cpu_measure_end = cpu_s();
}

static void fan_record_subs(void) {
    procstat_t *ps = &shm->proc[my_proc];
    long long published = __atomic_load_n(&shm->published, __ATOMIC_ACQUIRE);
    for (int i = 0; i < my_subs; i++) {
        conn_t *c = &conns[i];
        ps->received += c->f_received;
        ps->ooo += c->f_ooo;
        ps->lost += c->f_lost + (published > c->next_seq ? published - c->next_seq : 0);
    }
    ps->closes_without_frame = closes_without_frame; /* this process's own */
    ps->cpu_total = cpu_s();
    ps->done = 1;
}

/* One process's loop. Process 0 drives the phases (shm->phase); subscriber processes
 * follow them. */
static int fanout_loop(pid_t *kids, int nkids) {
    int have_pub = my_proc == 0 && opt.mode == MODE_FANOUT;
    int nlocal = my_subs + have_pub;
    int next_to_open = 0, local_hs = 0, close_sent = 0, seen_phase = PH_SETUP;
    long long local_hs_base = 0;
    double t_start = now_s(), t_deadline = t_start + opt.timeout_s, t_phase = t_start;
    double t_measure = 0, t_measure_end = 0, t_ready = 0, t_progress = t_start;
    long long done_at_start = 0, done_at_end = 0;
    int stdin_seen = 0;
    if (have_pub) start_conn(&conns[my_subs]);
    (void)local_hs_base;
    struct epoll_event evs[512];
    for (;;) {
        double t = now_s();
        if (t > t_deadline) die("timed out after %.0f s (phase %d)", opt.timeout_s, seen_phase);
        int ph = __atomic_load_n(&shm->phase, __ATOMIC_ACQUIRE);
        if (my_proc == 0) {
            /* children that fail take the run down with them */
            for (int k = 0; k < nkids; k++) {
                int st;
                if (kids[k] > 0 && waitpid(kids[k], &st, WNOHANG) == kids[k]) {
                    kids[k] = 0;
                    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || ph != PH_CLOSE) {
                        for (int j = 0; j < nkids; j++) if (kids[j] > 0) kill(kids[j], SIGKILL);
                        die("subscriber process %d ended early (status 0x%x)", k + 1, st);
                    }
                }
            }
            int pub_open = !have_pub || conns[my_subs].state == ST_OPEN;
            int np = ph;
            if (ph == PH_SETUP && pub_open &&
                __atomic_load_n(&shm->ready, __ATOMIC_RELAXED) == nsubs_total) {
                t_ready = t;
                printf("{\"event\": \"ready\", \"subs\": %d, \"open_s\": %.3f, "
                       "\"handshakes_per_s\": %.1f}\n", nsubs_total, t - t_start,
                       nsubs_total / (t - t_start));
                fflush(stdout);
                np = opt.mode == MODE_FANOUT ? PH_WARMUP : PH_HOLD;
                if (opt.mode == MODE_FANOUT) pub_last_done = t;
            } else if (ph == PH_WARMUP && t - t_phase >= opt.warmup_s) {
                np = PH_MEASURE;
                t_measure = t;
                done_at_start = pub_done;
                lat_n = 0;
                printf("{\"event\": \"measure_start\"}\n");
                fflush(stdout);
            } else if (ph == PH_MEASURE) {
                int stop = (opt.duration_s > 0 && t - t_measure >= opt.duration_s) ||
                           (opt.nmsgs && pub_done >= opt.nmsgs);
                if (t - pub_last_done > opt.stall_s) { stop = 1; pub_stalled = 1; }
                if (stop) {
                    np = PH_DRAIN;
                    t_measure_end = t;
                    done_at_end = pub_done;
                    printf("{\"event\": \"measure_end\"}\n");
                    fflush(stdout);
                }
            } else if (ph == PH_DRAIN && (pub_done == pub_sent || t - t_phase > 10)) {
                __atomic_store_n(&shm->published, pub_sent, __ATOMIC_RELEASE);
                np = PH_CLOSE;
            } else if (ph == PH_HOLD && (stdin_seen || t - t_ready >= opt.hold_s)) {
                long long m = __atomic_load_n(&shm->max_seq, __ATOMIC_RELAXED);
                __atomic_store_n(&shm->published, m + 1, __ATOMIC_RELEASE);
                np = PH_CLOSE;
            }
            if (np != ph) {
                __atomic_store_n(&shm->phase, np, __ATOMIC_RELEASE);
                ph = np;
                t_phase = t;
                if (ph == PH_WARMUP) pub_pump(&conns[my_subs]);
            }
            if (opt.progress_s > 0 && t - t_progress >= opt.progress_s) {
                t_progress = t;
                fprintf(stderr, "wsload: %.1f s: %lld/%d handshakes, %lld subscribed, "
                        "%lld delivered\n", t - t_start,
                        __atomic_load_n(&shm->handshakes, __ATOMIC_RELAXED), nsubs_total,
                        __atomic_load_n(&shm->ready, __ATOMIC_RELAXED),
                        __atomic_load_n(&shm->delivered, __ATOMIC_RELAXED));
            }
        }
        if (ph != seen_phase) {
            if (ph == PH_MEASURE) fan_proc_stats(1);
            if (ph == PH_DRAIN || (ph == PH_CLOSE && seen_phase == PH_MEASURE)) fan_proc_stats(2);
            seen_phase = ph;
        }
        if (ph == PH_SETUP) {
            long long hs = handshakes_done;
            if (hs > local_hs) {
                __atomic_add_fetch(&shm->handshakes, hs - local_hs, __ATOMIC_RELAXED);
                local_hs = hs;
            }
            while (next_to_open < my_subs && next_to_open - (hs - have_pub * (have_pub &&
                   conns[my_subs].state == ST_OPEN)) < opt.handshakes_in_flight)
                start_conn(&conns[next_to_open++]);
        }
        if (ph == PH_CLOSE && !close_sent) {
            close_sent = 1;
            if (handshakes_done > local_hs)
                __atomic_add_fetch(&shm->handshakes, handshakes_done - local_hs, __ATOMIC_RELAXED);
            for (int i = 0; i < nlocal; i++)
                if (conns[i].state == ST_OPEN) send_close(&conns[i]);
            t_phase = t;
        }
        if (close_sent && open_count == 0) {
            fan_record_subs();
            if (my_proc != 0) exit(0);
            int left = 0;
            for (int k = 0; k < nkids; k++) {
                int st;
                if (kids[k] > 0) {
                    if (waitpid(kids[k], &st, WNOHANG) == kids[k]) {
                        kids[k] = 0;
                        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                            die("subscriber process %d failed at close", k + 1);
                    } else left = 1;
                }
            }
            if (!left) break;
        }
        if (close_sent && t - t_phase > 10) die("%lld connections still open 10 s after close",
                                                open_count);
        int n = epoll_wait(epfd, evs, 512, 20);
        if (n < 0 && errno != EINTR) die("epoll_wait: %s", strerror(errno));
        for (int i = 0; i < n; i++) {
            uint32_t id = evs[i].data.u32;
            if (id == UINT32_MAX) {
                char tmp[256];
                ssize_t r = read(0, tmp, sizeof tmp);
                if (r <= 0 || memchr(tmp, '\n', r)) stdin_seen = 1;
                if (r <= 0) epoll_ctl(epfd, EPOLL_CTL_DEL, 0, NULL);
                continue;
            }
            if (id == UINT32_MAX - 1) { /* broadcasts completed */
                uint64_t v;
                if (read(efd, &v, 8) < 0 && errno != EAGAIN) die("eventfd: %s", strerror(errno));
                continue;
            }
            conn_t *c = &conns[id];
            if (c->state == ST_FREE) continue;
            if (c->state == ST_CONNECTING) {
                if (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_connected(c);
                continue;
            }
            if (evs[i].events & EPOLLOUT) flush(c);
            if (c->state != ST_FREE && evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                on_readable(c);
        }
        if (my_proc == 0) {
            /* completed broadcasts, in order */
            long long limit = opt.mode == MODE_FANOUT ? pub_sent
                              : __atomic_load_n(&shm->max_seq, __ATOMIC_RELAXED) + 1;
            if (limit > FAN_SLOTS && opt.mode == MODE_SUBSCRIBE) limit = FAN_SLOTS;
            int progressed = 0;
            while (pub_done < limit) {
                slot_t *s = &shm->slot[pub_done % FAN_SLOTS];
                if (__atomic_load_n(&s->count, __ATOMIC_ACQUIRE) != (uint32_t)nsubs_total) break;
                uint64_t sent_ns = opt.mode == MODE_FANOUT ? pub_send_ns[pub_done % FAN_SLOTS]
                                                           : s->sent_ns;
                if (ph == PH_MEASURE || opt.mode == MODE_SUBSCRIBE)
                    record_latency(s->max_ns > sent_ns ? (s->max_ns - sent_ns) * 1e-9 : 0);
                pub_done++;
                progressed = 1;
            }
            if (progressed) {
                pub_last_done = now_s();
                if (have_pub && (ph == PH_WARMUP || ph == PH_MEASURE) &&
                    conns[my_subs].state == ST_OPEN)
                    pub_pump(&conns[my_subs]);
            }
        }
    }
    /* report (process 0 only) */
    long long received = 0, lost = 0, ooo = 0, cwf = 0;
    double cpu_meas = 0, cpu_max = 0, cpu_total = 0;
    int nproc = opt.procs ? opt.procs + 1 : 1;
    for (int k = 0; k < nproc; k++) {
        procstat_t *ps = &shm->proc[k];
        received += ps->received; lost += ps->lost; ooo += ps->ooo;
        cwf += ps->closes_without_frame;
        double m = ps->cpu_measure_end - ps->cpu_measure_start;
        if (m < 0) m = 0;
        cpu_meas += m;
        if (m > cpu_max) cpu_max = m;
        cpu_total += ps->cpu_total;
    }
    qsort(lat_ns, lat_n, sizeof *lat_ns, cmp_u32);
    if (opt.mode == MODE_FANOUT) {
        double wall = t_measure_end - t_measure;
        long long b = done_at_end - done_at_start;
        printf("{\"mode\": \"fanout\", \"subs\": %d, \"procs\": %d, \"src_addrs\": %d, "
               "\"size\": %zu, \"binary\": %s, \"window\": %d, \"elapsed_s\": %.4f, "
               "\"broadcasts\": %lld, \"broadcasts_per_s\": %.2f, \"deliveries\": %lld, "
               "\"deliveries_per_s\": %.1f, \"lat_p50_us\": %.1f, \"lat_p99_us\": %.1f, "
               "\"lat_samples\": %zu, \"published\": %lld, \"received\": %lld, \"lost\": %lld, "
               "\"out_of_order\": %lld, \"stalled\": %s, \"open_s\": %.3f, "
               "\"client_cpu_s\": %.4f, \"client_cpu_pct\": %.1f, "
               "\"client_cpu_max_proc_pct\": %.1f, \"client_cpu_total_s\": %.3f}\n",
               nsubs_total, opt.procs, nsrc, opt.size, opt.binary ? "true" : "false", opt.window,
               wall, b, b / wall, b * (long long)nsubs_total, b * (double)nsubs_total / wall,
               pct_us(0.5), pct_us(0.99), lat_n, pub_sent, received, lost, ooo,
               pub_stalled ? "true" : "false", t_ready - t_start, cpu_meas,
               100 * cpu_meas / wall, 100 * cpu_max / wall, cpu_total);
    } else {
        printf("{\"mode\": \"subscribe\", \"subs\": %d, \"procs\": %d, \"src_addrs\": %d, "
               "\"size\": %zu, \"open_s\": %.3f, \"handshakes_per_s\": %.1f, \"held_s\": %.3f, "
               "\"broadcasts_seen\": %lld, \"broadcasts_complete\": %lld, \"received\": %lld, "
               "\"lost\": %lld, \"out_of_order\": %lld, \"closes_without_frame\": %lld, "
               "\"lat_p50_us\": %.1f, \"lat_p99_us\": %.1f, \"client_cpu_total_s\": %.3f}\n",
               nsubs_total, opt.procs, nsrc, opt.size, t_ready - t_start,
               nsubs_total / (t_ready - t_start), t_phase - t_ready,
               __atomic_load_n(&shm->published, __ATOMIC_RELAXED), pub_done, received, lost, ooo,
               cwf, pct_us(0.5), pct_us(0.99), cpu_total);
    }
    return 0;
}

static int fanout_main(void) {
    if (opt.size < FAN_HDR + 6 || opt.size > sizeof fan_pattern)
        die("fanout: -s must be between %d and %zu bytes", FAN_HDR + 6, sizeof fan_pattern);
    if (opt.procs < 0 || opt.procs > FAN_MAXPROCS) die("--procs: 0..%d", FAN_MAXPROCS);
    if (opt.window > FAN_SLOTS / 4) die("-w at most %d", FAN_SLOTS / 4);
    if (opt.procs > opt.conns) opt.procs = opt.conns;
    fan_fill_pattern();
    nsubs_total = opt.conns;
    shm = mmap(NULL, sizeof *shm, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shm == MAP_FAILED) die("mmap: %s", strerror(errno));
    memset(shm, 0, sizeof *shm);
    shm->phase = PH_SETUP;
    shm->max_seq = -1;
    efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (efd < 0) die("eventfd: %s", strerror(errno));
    fflush(stdout);
    pid_t kids[FAN_MAXPROCS];
    int first = 0;
    my_proc = 0;
    my_subs = opt.procs ? 0 : nsubs_total;
    for (int k = 0; k < opt.procs; k++) {
        int lo = (int)((long long)nsubs_total * k / opt.procs);
        int hi = (int)((long long)nsubs_total * (k + 1) / opt.procs);
        pid_t pid = fork();
        if (pid < 0) die("fork: %s", strerror(errno));
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            my_proc = k + 1;
            my_subs = hi - lo;
            first = lo;
            break;
        }
        kids[k] = pid;
    }
    rng_state ^= (uint64_t)(my_proc + 1) * 0x9E3779B97F4A7C15ull;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && (rlim_t)my_subs + 16 > rl.rlim_cur)
        die("%d connections in one process, but it may open %llu files: use --procs "
            "(each process takes a slice)", my_subs, (unsigned long long)rl.rlim_cur);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    int have_pub = my_proc == 0 && opt.mode == MODE_FANOUT;
    nconns = my_subs + have_pub;
    conns = calloc(nconns ? nconns : 1, sizeof *conns);
    if (!conns) die("out of memory");
    for (int i = 0; i < nconns; i++) {
        conns[i].id = i;
        conns[i].gid = first + i;
        conns[i].fd = -1;
        conns[i].role = i < my_subs ? ROLE_SUB : ROLE_PUB;
        conns[i].qcap = conns[i].role == ROLE_PUB ? opt.window + 8 : 4;
        conns[i].q = xmalloc(conns[i].qcap * sizeof(outq_t));
        conns[i].sent_at = xmalloc(sizeof(double));
    }
    if (my_proc == 0) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = UINT32_MAX - 1};
        epoll_ctl(epfd, EPOLL_CTL_ADD, efd, &ev);
        if (opt.mode == MODE_SUBSCRIBE) {
            struct epoll_event e0 = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
            epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &e0);
        }
    }
    return fanout_loop(my_proc == 0 ? kids : NULL, my_proc == 0 ? opt.procs : 0);
}

int main(int argc, char **argv) {
    if (argc < 2) usage();
    if (!strcmp(argv[1], "echo")) opt.mode = MODE_ECHO;
    else if (!strcmp(argv[1], "connect")) opt.mode = MODE_CONNECT;
    else if (!strcmp(argv[1], "idle")) opt.mode = MODE_IDLE;
    else if (!strcmp(argv[1], "fanout")) opt.mode = MODE_FANOUT;
    else if (!strcmp(argv[1], "subscribe")) opt.mode = MODE_SUBSCRIBE;
    else usage();
    static struct option longopts[] = {
        {"path", required_argument, 0, 'P'}, {"deflate", no_argument, 0, 'D'},
        {"hold-s", required_argument, 0, 'H'}, {"timeout-s", required_argument, 0, 'T'},
        {"sub-path", required_argument, 0, 'S'}, {"pub-path", required_argument, 0, 'U'},
        {"procs", required_argument, 0, 'R'}, {"src-addrs", required_argument, 0, 'A'},
        {"stall-s", required_argument, 0, 'L'}, {"progress-s", required_argument, 0, 'G'},
        {0, 0, 0, 0}};
    int ch;
    optind = 2;
    while ((ch = getopt_long(argc, argv, "h:p:c:n:s:bw:d:W:k:", longopts, NULL)) != -1) {
        switch (ch) {
        case 'h': opt.host = optarg; break;
        case 'p': opt.port = atoi(optarg); break;
        case 'P': opt.path = optarg; break;
        case 'c': opt.conns = atoi(optarg); break;
        case 'n': opt.nmsgs = atoll(optarg); break;
        case 's': opt.size = strtoull(optarg, NULL, 10); break;
        case 'b': opt.binary = 1; break;
        case 'w': opt.window = atoi(optarg); break;
        case 'd': opt.duration_s = atof(optarg); break;
        case 'W': opt.warmup_s = atof(optarg); break;
        case 'k': opt.handshakes_in_flight = atoi(optarg); break;
        case 'D': opt.deflate = 1; break;
        case 'H': opt.hold_s = atof(optarg); break;
        case 'T': opt.timeout_s = atof(optarg); break;
        case 'S': opt.sub_path = optarg; break;
        case 'U': opt.pub_path = optarg; break;
        case 'R': opt.procs = atoi(optarg); break;
        case 'A': parse_src_addrs(optarg); break;
        case 'L': opt.stall_s = atof(optarg); break;
        case 'G': opt.progress_s = atof(optarg); break;
        default: usage();
        }
    }
    if (!opt.port || opt.conns < 1 || opt.window < 1 || opt.handshakes_in_flight < 1) usage();
    if (opt.mode != MODE_ECHO && opt.mode != MODE_FANOUT) opt.window = 1;
    if (opt.mode == MODE_FANOUT || opt.mode == MODE_SUBSCRIBE) {
        if (opt.size == 32 && opt.mode == MODE_FANOUT) opt.size = 64;
        if (opt.mode == MODE_SUBSCRIBE && opt.size == 32) opt.size = 64;
    }
    if (opt.timeout_s <= 0)
        opt.timeout_s = opt.warmup_s + opt.duration_s +
                        (opt.mode == MODE_IDLE || opt.mode == MODE_SUBSCRIBE ? opt.hold_s : 0) + 60;
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();

    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", opt.port);
    if (getaddrinfo(opt.host, portstr, &hints, &ai) != 0) die("cannot resolve %s", opt.host);
    memcpy(&addr, ai->ai_addr, ai->ai_addrlen);
    addrlen = ai->ai_addrlen;
    freeaddrinfo(ai);
    snprintf(host_header, sizeof host_header, strchr(opt.host, ':') ? "[%s]:%d" : "%s:%d",
             opt.host, opt.port);

    if (opt.mode == MODE_FANOUT || opt.mode == MODE_SUBSCRIBE) return fanout_main();
    build_ring();
    epfd = epoll_create1(EPOLL_CLOEXEC);
    nconns = opt.conns;
    conns = calloc(nconns, sizeof *conns);
    if (!conns) die("out of memory");
    for (int i = 0; i < nconns; i++) {
        conns[i].id = i;
        conns[i].fd = -1;
        conns[i].qcap = opt.window + 8;
        conns[i].q = xmalloc(conns[i].qcap * sizeof(outq_t));
        conns[i].sent_at = xmalloc(opt.window * sizeof(double));
    }

    double t_start = now_s(), t_deadline = t_start + opt.timeout_s;
    double t_phase = 0, t_measure = 0, t_measure_end = 0, cpu_measure = 0, cpu_measure_end = 0;
    double t_ready = 0, user_measure = 0, user_measure_end = 0;
    int next_to_open = 0;
    if (opt.mode == MODE_CONNECT) {
        phase = PH_WARMUP;
        t_phase = t_start;
        for (int i = 0; i < nconns; i++) start_conn(&conns[i]);
        next_to_open = nconns;
    } else {
        phase = PH_SETUP;
        int first = opt.mode == MODE_IDLE ? opt.handshakes_in_flight : nconns;
        for (; next_to_open < nconns && next_to_open < first; next_to_open++)
            start_conn(&conns[next_to_open]);
    }
    if (opt.mode == MODE_IDLE) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
        epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &ev);
    }
    struct epoll_event evs[512];
    int stdin_seen = 0;

    for (;;) {
        double t = now_s();
        if (t > t_deadline) die("timed out after %.0f s (phase %d)", opt.timeout_s, phase);
        /* phase transitions */
        if (phase == PH_SETUP) {
            long long open_now = handshakes_done;
            if (opt.mode == MODE_IDLE) {
                long long busy = next_to_open - open_now;
                while (next_to_open < nconns && busy < opt.handshakes_in_flight) {
                    start_conn(&conns[next_to_open++]);
                    busy++;
                }
            }
            if (open_now == nconns) {
                if (opt.mode == MODE_ECHO) {
                    phase = PH_WARMUP;
                    t_phase = t;
                    for (int i = 0; i < nconns; i++) pump(&conns[i]);
                } else {
                    phase = PH_HOLD;
                    t_ready = t;
                    printf("{\"event\": \"ready\", \"conns\": %d, \"deflate_accepted\": %lld, "
                           "\"open_s\": %.3f}\n", nconns, deflate_accepted, t - t_start);
                    fflush(stdout);
                }
            }
        }
        if (phase == PH_WARMUP && t - t_phase >= opt.warmup_s) {
            phase = PH_MEASURE;
            t_measure = t;
            cpu_measure = cpu_s();
            user_measure = cpu_user_s();
            measured_msgs = 0;
            completed_conns = 0;
            lat_n = 0;
        }
        if (phase == PH_MEASURE) {
            int done = 0;
            if (opt.duration_s > 0 && t - t_measure >= opt.duration_s) done = 1;
            if (opt.mode == MODE_ECHO && opt.nmsgs) {
                done = 1;
                for (int i = 0; i < nconns && done; i++) done = conns[i].recvd >= opt.nmsgs;
            }
            if (done) {
                phase = PH_DRAIN;
                t_measure_end = t;
                cpu_measure_end = cpu_s();
                user_measure_end = cpu_user_s();
                t_phase = t;
            }
        }
        if (phase == PH_DRAIN) {
            /* let in-flight echoes and lifecycles finish so the close handshake is clean */
            int busy = 0;
            for (int i = 0; i < nconns; i++) {
                conn_t *c = &conns[i];
                if (opt.mode == MODE_ECHO ? c->recvd < c->sent || c->m_op : c->state != ST_FREE)
                    busy = 1;
            }
            if (!busy || t - t_phase > 10) {
                if (busy) die("in-flight echoes did not come back within 10 s");
                phase = PH_CLOSE;
                t_phase = t;
                for (int i = 0; i < nconns; i++)
                    if (conns[i].state == ST_OPEN) send_close(&conns[i]);
            }
        }
        if (phase == PH_HOLD && (stdin_seen || t - t_ready >= opt.hold_s)) {
            phase = PH_CLOSE;
            t_phase = t;
            for (int i = 0; i < nconns; i++)
                if (conns[i].state == ST_OPEN) send_close(&conns[i]);
        }
        if (phase == PH_CLOSE) {
            if (open_count == 0) break;
            if (t - t_phase > 10) die("%lld connections still open 10 s after close", open_count);
        }

        int timeout_ms = 50;
        int n = epoll_wait(epfd, evs, 512, timeout_ms);
        if (n < 0 && errno != EINTR) die("epoll_wait: %s", strerror(errno));
        for (int i = 0; i < n; i++) {
            uint32_t id = evs[i].data.u32;
            if (id == UINT32_MAX) {
                char tmp[256];
                ssize_t r = read(0, tmp, sizeof tmp);
                if (r <= 0 || memchr(tmp, '\n', r)) stdin_seen = 1;
                if (r <= 0) epoll_ctl(epfd, EPOLL_CTL_DEL, 0, NULL);
                continue;
            }
            conn_t *c = &conns[id];
            if (c->state == ST_FREE) continue; /* closed earlier in this batch */
            if (c->state == ST_CONNECTING) {
                if (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_connected(c);
                continue;
            }
            if (evs[i].events & EPOLLOUT) flush(c);
            if (c->state != ST_FREE && evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                on_readable(c);
        }
    }

    double cpu_total = cpu_s();
    double wall = t_measure_end - t_measure;
    qsort(lat_ns, lat_n, sizeof *lat_ns, cmp_u32);
    if (opt.mode == MODE_ECHO) {
        printf("{\"mode\": \"echo\", \"conns\": %d, \"size\": %zu, \"binary\": %s, \"window\": %d, "
               "\"elapsed_s\": %.4f, \"msgs\": %lld, \"msgs_per_s\": %.1f, \"mb_per_s\": %.3f, "
               "\"lat_p50_us\": %.1f, \"lat_p99_us\": %.1f, \"lat_samples\": %zu, "
               "\"client_cpu_s\": %.4f, \"client_user_s\": %.4f, \"client_cpu_pct\": %.1f, "
               "\"client_cpu_total_s\": %.3f}\n",
               nconns, opt.size, opt.binary ? "true" : "false", opt.window, wall, measured_msgs,
               measured_msgs / wall, measured_msgs * (double)opt.size / 1e6 / wall, pct_us(0.5),
               pct_us(0.99), lat_n, cpu_measure_end - cpu_measure, user_measure_end - user_measure,
               100 * (cpu_measure_end - cpu_measure) / wall, cpu_total);
    } else if (opt.mode == MODE_CONNECT) {
        printf("{\"mode\": \"connect\", \"in_flight\": %d, \"size\": %zu, \"elapsed_s\": %.4f, "
               "\"conns\": %lld, \"conns_per_s\": %.1f, \"lat_p50_us\": %.1f, \"lat_p99_us\": %.1f, "
               "\"closes_without_frame\": %lld, \"client_cpu_s\": %.4f, \"client_user_s\": %.4f, "
               "\"client_cpu_pct\": %.1f, \"client_cpu_total_s\": %.3f}\n",
               nconns, opt.size, wall, completed_conns, completed_conns / wall, pct_us(0.5),
               pct_us(0.99), closes_without_frame, cpu_measure_end - cpu_measure,
               user_measure_end - user_measure,
               100 * (cpu_measure_end - cpu_measure) / wall, cpu_total);
    } else {
        printf("{\"mode\": \"idle\", \"conns\": %d, \"deflate_offered\": %s, "
               "\"deflate_accepted\": %lld, \"open_s\": %.3f, \"held_s\": %.3f, "
               "\"closes_without_frame\": %lld, \"client_cpu_total_s\": %.3f}\n",
               nconns, opt.deflate ? "true" : "false", deflate_accepted, t_ready - t_start,
               t_phase - t_ready, closes_without_frame, cpu_total);
    }
    return 0;
}
