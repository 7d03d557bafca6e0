//! The committed C header, `include/duet.h`, is the one cbindgen generates from the sources
//! now: a change to the API that was not carried to the header fails here.
//!
//! To refresh it: `DUET_UPDATE_HEADER=1 cargo test -p duet-capi --test header`.

use std::fs;
use std::path::Path;

#[test]
fn the_committed_header_is_the_generated_one() {
    let generated_path = Path::new(env!("OUT_DIR")).join("duet.h");
    let committed_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("include")
        .join("duet.h");
    let generated = fs::read_to_string(&generated_path).expect("build.rs wrote duet.h");
    if std::env::var_os("DUET_UPDATE_HEADER").is_some() {
        fs::write(&committed_path, &generated).expect("include/duet.h is writable");
    }
    let committed = fs::read_to_string(&committed_path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale: it differs from the header generated from the sources ({}).\n\
         Refresh it with `DUET_UPDATE_HEADER=1 cargo test -p duet-capi --test header` \
         and commit it.",
        committed_path.display(),
        generated_path.display()
    );
}

#[test]
fn the_header_declares_every_function() {
    let header = include_str!("../include/duet.h");
    for function in [
        "DuetCall *duet_call_new(const char *options_json, char **error_out);",
        "DuetStatus duet_call_start(DuetCall *call);",
        "char *duet_call_poll_signal(DuetCall *call, int timeout_ms);",
        "DuetStatus duet_call_handle_signal(DuetCall *call, const char *signal_json);",
        "DuetCallState duet_call_state(DuetCall *call);",
        "char *duet_call_stats_json(DuetCall *call);",
        "DuetStatus duet_call_hang_up(DuetCall *call, const char *reason);",
        "void duet_call_free(DuetCall *call);",
        "void duet_string_free(char *text);",
        "const char *duet_last_error(void);",
    ] {
        assert!(header.contains(function), "duet.h lacks `{function}`");
    }
}
