//! Output of the CLI commands that live in the library (the newer ones;
//! `main.rs` parses arguments and hands off here).

pub mod actions;
pub mod admin;
pub mod backup;
pub mod recovery;

/// `--json` output: pretty-printed, one document.
pub fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("serializable")
    );
}

/// 42s, 3m05s, 2h07m.
pub fn duration(secs: f64) -> String {
    let s = secs.round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}
