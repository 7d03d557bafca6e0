/*
 * A duet call between two sides in one process, through the C API (capi/include/duet.h).
 *
 * The loop in carry() plays the app's own channel: every signal one side emits (offer,
 * answer, ICE candidates, hang-up) is handed, in order, to the other side. Once both sides
 * are connected, media (a tone and the test pattern) flows for about three seconds; then each
 * side's stats are printed, the caller hangs up, and both calls are freed.
 *
 * Exits 0 only if both sides connected and the callee decoded video frames and played audio.
 *
 * Build (from the repository root, after `cargo build -p duet-capi`):
 *   cc samples/c/call.c -Icapi/include -Ltarget/debug -lduet_capi \
 *      -Wl,-rpath,"$PWD/target/debug" -o call && ./call
 */

#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "duet.h"

/* Milliseconds on a monotonic clock. */
static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

/* Moves every signal `from` has ready to `to`; returns the number moved, -1 on an error. */
static int carry(DuetCall *from, DuetCall *to, const char *label) {
    int moved = 0;
    char *signal;
    while ((signal = duet_call_poll_signal(from, 0)) != NULL) {
        DuetStatus status = duet_call_handle_signal(to, signal);
        if (status != DUET_STATUS_OK) {
            fprintf(stderr, "%s: signal refused (%d): %s\n", label, (int)status,
                    duet_last_error());
            duet_string_free(signal);
            return -1;
        }
        duet_string_free(signal);
        moved++;
    }
    return moved;
}

/* Carries both sides' signals for `ms` milliseconds, or until `until_connected` and both
 * sides are connected. Returns 0, or -1 on an error. */
static int pump_signals(DuetCall *caller, DuetCall *callee, double ms, int until_connected) {
    double deadline = now_ms() + ms;
    while (now_ms() < deadline) {
        if (carry(caller, callee, "caller -> callee") < 0 ||
            carry(callee, caller, "callee -> caller") < 0) {
            return -1;
        }
        if (until_connected && duet_call_state(caller) == DUET_CALL_STATE_CONNECTED &&
            duet_call_state(callee) == DUET_CALL_STATE_CONNECTED) {
            return 0;
        }
        struct timespec pause = {0, 5 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    return 0;
}

/* The number after `"key":` in `json`, or -1 when the key is absent. */
static double json_number(const char *json, const char *key) {
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\":", key);
    const char *at = strstr(json, pattern);
    return at ? strtod(at + strlen(pattern), NULL) : -1.0;
}

/* Prints one side's stats; fills in what the callee's check needs. */
static void print_stats(DuetCall *call, const char *label, double *frames_decoded,
                        double *periods_played) {
    char *stats = duet_call_stats_json(call);
    if (stats == NULL) {
        fprintf(stderr, "%s: no stats: %s\n", label, duet_last_error());
        return;
    }
    printf("%s stats: %s\n", label, stats);
    *frames_decoded = json_number(stats, "frames_decoded");
    *periods_played = json_number(stats, "periods_played");
    duet_string_free(stats);
}

int main(void) {
    const char *options =
        "{\"audio\":true,\"video\":true,\"width\":320,\"height\":240,\"fps\":30,"
        "\"video_kbps\":300}";
    char *error = NULL;
    DuetCall *caller = duet_call_new(options, &error);
    if (caller == NULL) {
        fprintf(stderr, "caller: %s\n", error);
        duet_string_free(error);
        return 1;
    }
    DuetCall *callee = duet_call_new(options, &error);
    if (callee == NULL) {
        fprintf(stderr, "callee: %s\n", error);
        duet_string_free(error);
        duet_call_free(caller);
        return 1;
    }

    int ok = 1;
    double started = now_ms();
    if (duet_call_start(caller) != DUET_STATUS_OK) {
        fprintf(stderr, "start: %s\n", duet_last_error());
        ok = 0;
    }
    if (ok && pump_signals(caller, callee, 15000, 1) < 0) {
        ok = 0;
    }
    int connected = duet_call_state(caller) == DUET_CALL_STATE_CONNECTED &&
                    duet_call_state(callee) == DUET_CALL_STATE_CONNECTED;
    printf("connected: %s after %.0f ms\n", connected ? "yes" : "no", now_ms() - started);

    double frames = -1, periods = -1, ignored_frames, ignored_periods;
    if (ok && connected) {
        /* Media flows; keep carrying signals meanwhile (late candidates, a hang-up). */
        if (pump_signals(caller, callee, 3000, 0) < 0) {
            ok = 0;
        }
        print_stats(caller, "caller", &ignored_frames, &ignored_periods);
        print_stats(callee, "callee", &frames, &periods);
    }

    if (duet_call_hang_up(caller, "sample done") != DUET_STATUS_OK) {
        fprintf(stderr, "hang up: %s\n", duet_last_error());
    }
    /* Carry the caller's end signal so that the callee ends too. */
    pump_signals(caller, callee, 500, 0);
    printf("after hang-up: caller %s, callee %s\n",
           duet_call_state(caller) == DUET_CALL_STATE_ENDED ? "ended" : "on",
           duet_call_state(callee) == DUET_CALL_STATE_ENDED ? "ended" : "on");

    duet_call_free(caller);
    duet_call_free(callee);

    int passed = ok && connected && frames > 0 && periods > 0;
    printf("callee decoded %.0f video frames and played %.0f audio periods: %s\n", frames,
           periods, passed ? "PASS" : "FAIL");
    return passed ? 0 : 1;
}
