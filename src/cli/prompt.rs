//! Questions put to the person at the terminal.

use std::io::{BufRead, Write};

use anyhow::Result;

/// Asks a yes/no question on the terminal (on stderr; the answer from stdin): true for `y`,
/// `Y` or `yes`.
pub fn ask(question: &str) -> Result<bool> {
    let mut err = std::io::stderr();
    err.write_all(question.as_bytes())?;
    err.flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}
