//! [`watch_loops`]: the `running` step of a service whose work is spawned
//! background loops, so that a loop that ends on its own is the service's
//! failure instead of going unnoticed.

use crate::service::Stop;

/// A background loop that ended while its service was running.
#[derive(Debug, thiserror::Error)]
#[error("a background loop {0}")]
pub struct LoopEnded(String);

/// The `running` step of a service whose work is spawned loops that end when
/// `stop` fires: waits for `stop`, then for the loops. A loop that ends (or
/// panics) before `stop` is the service's failure.
pub async fn watch_loops(
    mut stop: Stop,
    loops: Vec<tokio::task::JoinHandle<()>>,
) -> Result<(), LoopEnded> {
    use futures::StreamExt;
    let mut loops: futures::stream::FuturesUnordered<_> = loops.into_iter().collect();
    tokio::select! {
        () = stop.wait() => {}
        Some(ended) = loops.next() => {
            // Told to stop meanwhile: that is why it ended.
            if stop.is_stopping() && ended.is_ok() {
                return finish(loops).await;
            }
            return Err(LoopEnded(match ended {
                Err(e) if e.is_panic() => "panicked".to_string(),
                Err(e) => format!("failed: {e}"),
                Ok(()) => "ended on its own".to_string(),
            }));
        }
    }
    finish(loops).await
}

async fn finish(
    mut loops: futures::stream::FuturesUnordered<tokio::task::JoinHandle<()>>,
) -> Result<(), LoopEnded> {
    use futures::StreamExt;
    while let Some(ended) = loops.next().await {
        if let Err(e) = ended {
            return Err(LoopEnded(format!("failed while stopping: {e}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn loops_that_end_because_of_the_stop_are_not_a_failure() {
        for _ in 0..200 {
            let (tx, stop) = Stop::new();
            let mut signal = stop.clone();
            let quick = tokio::spawn(async move { signal.wait().await });
            let _ = tx.send(true);
            // Both the stop and the loop's end are ready when it looks.
            tokio::task::yield_now().await;
            assert!(watch_loops(stop, vec![quick]).await.is_ok());
        }
    }

    #[tokio::test]
    async fn a_loop_that_ends_by_itself_is_a_failure() {
        let (_tx, stop) = Stop::new();
        let done = tokio::spawn(async {});
        let err = watch_loops(stop, vec![done]).await.unwrap_err();
        assert_eq!(err.to_string(), "a background loop ended on its own");
        let (_tx, stop) = Stop::new();
        let broken = tokio::spawn(async { panic!("boom") });
        let err = watch_loops(stop, vec![broken]).await.unwrap_err();
        assert_eq!(err.to_string(), "a background loop panicked");
    }
}
