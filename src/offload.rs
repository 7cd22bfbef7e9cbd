//! CPU-heavy work on large inputs (parsing and rewriting big upstream
//! documents) runs on tokio's blocking pool, so one hostile document never
//! stalls the other connections of an async worker; small inputs are handled
//! in place, where a hand-off would cost more than the work.

use crate::error::AppError;

/// Inputs at least this large are handled off the async workers.
pub const OFFLOAD_MIN: usize = 64 * 1024;

/// Runs `f` in place when `size` is small, else on the blocking pool.
pub async fn cpu_bound<T: Send + 'static>(
    size: usize,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AppError> {
    if size < OFFLOAD_MIN {
        return Ok(f());
    }
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AppError::Internal(format!("document task: {e}")))
}
