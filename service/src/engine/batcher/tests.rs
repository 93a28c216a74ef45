//! Batch collection: the token budget, the wait for texts on their way, and no wait without.

use super::*;

/// A job of `texts` inputs of `tokens` tokens each.
fn job(texts: usize, tokens: usize) -> Job {
    let row = TokenRow {
        ids: vec![1; tokens],
        type_ids: vec![0; tokens],
    };
    Job {
        rows: vec![row; texts],
        options: EmbedOptions::default(),
        deadline: Instant::now() + Duration::from_secs(60),
        reply: oneshot::channel().0,
        parent: tracing::Span::none(),
        queued: None,
    }
}

fn config(max_batch_tokens: usize, max_wait: Duration) -> BatchConfig {
    BatchConfig {
        queue_capacity: 1024,
        max_batch_tokens,
        max_wait,
    }
}

#[test]
fn collecting_stops_once_a_pass_worth_of_tokens_is_waiting() {
    let (sender, receiver) = mpsc::channel();
    // Four jobs of one 100-token text each wait; the budget is 250 tokens. Counted in
    // tokens, three jobs fill it; counted as 8 tokens a text, all four would be taken
    // and the worker would then wait for more.
    for _ in 0..3 {
        sender.send(job(1, 100)).unwrap();
    }
    let taken = collect(
        &receiver,
        job(1, 100),
        &AtomicUsize::new(4),
        &config(250, Duration::from_secs(2)),
    );
    assert_eq!(taken.len(), 3);
    assert_eq!(taken.iter().map(Job::tokens).sum::<usize>(), 300);
    assert_eq!(receiver.try_recv().map(|j| j.tokens()).ok(), Some(100));
}

#[test]
fn a_job_that_fills_the_budget_alone_is_not_held_back() {
    let (sender, receiver) = mpsc::channel();
    sender.send(job(1, 5)).unwrap();
    let taken = collect(
        &receiver,
        job(2, 300),
        &AtomicUsize::new(3),
        &config(512, Duration::from_secs(2)),
    );
    assert_eq!(taken.len(), 1);
    assert!(receiver.try_recv().is_ok(), "the queued job was taken");
}

#[test]
fn without_a_wait_only_what_is_queued_is_taken() {
    let (sender, receiver) = mpsc::channel();
    sender.send(job(3, 5)).unwrap();
    sender.send(job(1, 5)).unwrap();
    let taken = collect(
        &receiver,
        job(1, 5),
        &AtomicUsize::new(6),
        &config(4096, Duration::ZERO),
    );
    assert_eq!(taken.iter().map(|j| j.rows.len()).sum::<usize>(), 5);
}

#[test]
fn with_nothing_on_its_way_a_lone_job_does_not_wait_out_the_window() {
    let (_sender, receiver) = mpsc::channel();
    let started = Instant::now();
    let taken = collect(
        &receiver,
        job(1, 5),
        &AtomicUsize::new(1),
        &config(4096, Duration::from_secs(30)),
    );
    assert_eq!(taken.len(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "waited {:?} with nothing admitted",
        started.elapsed()
    );
}

#[test]
fn a_job_admitted_and_on_its_way_is_waited_for() {
    let (sender, receiver) = mpsc::channel();
    // Two texts admitted: the first is collected, the second is still being tokenized.
    let admitted = AtomicUsize::new(2);
    let late = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        sender.send(job(1, 5)).unwrap();
    });
    let taken = collect(
        &receiver,
        job(1, 5),
        &admitted,
        &config(4096, Duration::from_secs(30)),
    );
    late.join().unwrap();
    assert_eq!(taken.len(), 2, "the job on its way was not waited for");
}
