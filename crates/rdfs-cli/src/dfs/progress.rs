//! Progress bars for long transfers: drawn on stderr when it is a
//! terminal, silent when output is piped or redirected.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Transfers smaller than this finish too fast to need a bar.
const MIN_SIZE: u64 = 16 * 1024 * 1024;

/// A bar for `total` bytes (a spinner with a byte count when the size is
/// unknown); hidden unless stderr is a terminal and the transfer is large.
pub fn transfer(label: &str, total: Option<u64>) -> ProgressBar {
    if total.is_some_and(|t| t < MIN_SIZE) {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(total) => {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        }
        None => {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            if let Ok(style) =
                ProgressStyle::with_template("{msg} {spinner} {bytes} {binary_bytes_per_sec}")
            {
                bar.set_style(style);
            }
            bar
        }
    };
    bar.set_message(label.to_string());
    bar
}
