//! Dynamic batching across requests: one bounded queue and one inference thread per model.
//!
//! Requests are admitted by text count (a full queue is refused at once, so callers can answer
//! 429 instead of letting latency grow), tokenized (on the caller's thread when they are a few
//! short texts, else on the tokenization pool, off the async runtime), and
//! picked up by the model's inference thread, which takes everything already waiting, and waits
//! (at most the configured window) only for texts already admitted and still being tokenized:
//! a lone request starts at once, a burst shares passes. It orders the inputs by length and runs
//! forward passes bounded by a token budget. Requests share passes
//! whatever their options: pooling and normalisation are applied per input after the encoder.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        mpsc, Arc,
    },
    thread,
    time::{Duration, Instant},
};

use tokio::sync::oneshot;

use super::{
    error::EngineError,
    model::{EmbedOptions, EmbeddingModel, Embeddings},
    tokenizer::{TokenBatch, TokenRow},
    tokenizing,
};

/// Requests whose texts add up to at most this many bytes are tokenized on the caller's thread:
/// tens of microseconds, less than the two thread hand-offs the tokenization pool costs.
const INLINE_TOKENIZE_BYTES: usize = 1024;

/// How the batcher forms batches.
#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    /// Texts that may wait per model before new work is refused.
    pub queue_capacity: usize,
    /// Tokens per forward pass: real tokens where the encoder skips padding, else padded ones
    /// (rows × longest row).
    pub max_batch_tokens: usize,
    /// Longest wait for admitted texts still on their way when a batch is not full (0: take
    /// only what is queued). Nothing on its way, no wait.
    pub max_wait: Duration,
}

/// What happened in one forward pass, for metrics.
#[derive(Debug, Clone, Copy)]
pub struct BatchStats {
    /// Inputs in the pass.
    pub size: usize,
    /// Real tokens in the pass.
    pub tokens: usize,
    /// Wall time of the pass.
    pub duration: Duration,
}

/// Receives batch statistics (the transport layer turns them into metrics).
pub type BatchObserver = Arc<dyn Fn(&str, BatchStats) + Send + Sync>;

/// Why a submission was not answered with vectors.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The queue is full; try again later.
    #[error("the embedding queue is full ({queued} texts waiting); retry later")]
    Overloaded {
        /// Texts waiting when the request was refused.
        queued: usize,
    },
    /// The request waited longer than its deadline.
    #[error("the request timed out after {0:?}")]
    TimedOut(Duration),
    /// The inference thread is gone (shutting down).
    #[error("the model is shutting down")]
    Closed,
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

struct Job {
    rows: Vec<TokenRow>,
    options: EmbedOptions,
    deadline: Instant,
    reply: oneshot::Sender<Result<Embeddings, SubmitError>>,
    /// The caller's span: parent of this job's `inference` span.
    parent: tracing::Span,
    /// Open while the job waits; closed when its first pass starts.
    queued: Option<tracing::Span>,
}

impl Job {
    /// Tokens of the job's inputs.
    fn tokens(&self) -> usize {
        self.rows.iter().map(TokenRow::len).sum()
    }
}

/// The queue in front of one model.
pub struct BatchQueue {
    model: Arc<EmbeddingModel>,
    sender: mpsc::Sender<Job>,
    queued: Arc<AtomicUsize>,
    capacity: usize,
}

impl BatchQueue {
    /// Starts the model's inference thread.
    pub fn start(model: Arc<EmbeddingModel>, config: BatchConfig, observer: BatchObserver) -> Self {
        let (sender, receiver) = mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let worker = Worker {
            model: Arc::clone(&model),
            receiver,
            queued: Arc::clone(&queued),
            config,
            observer,
        };
        let name = format!("infer-{}", model.info().name);
        thread::Builder::new()
            .name(name)
            .spawn(move || worker.run())
            .expect("spawning an inference thread");
        Self {
            model,
            sender,
            queued,
            capacity: config.queue_capacity,
        }
    }

    /// The model behind the queue.
    pub fn model(&self) -> &Arc<EmbeddingModel> {
        &self.model
    }

    /// Texts waiting or in the forward pass now.
    pub fn depth(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Embeds `texts`, waiting at most `timeout` in all. Refuses at once when the queue is full.
    pub async fn embed(
        &self,
        texts: Vec<String>,
        options: EmbedOptions,
        timeout: Duration,
    ) -> Result<Embeddings, SubmitError> {
        let deadline = Instant::now() + timeout;
        let n = texts.len();
        if n == 0 {
            return Ok(Embeddings {
                vectors: Vec::new(),
                token_counts: Vec::new(),
            });
        }
        let admitted = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                (q + n <= self.capacity || q == 0).then_some(q + n)
            });
        if let Err(queued) = admitted {
            return Err(SubmitError::Overloaded { queued });
        }
        let release = Release {
            queued: &self.queued,
            n,
            armed: true,
        };
        let model = Arc::clone(&self.model);
        let parent = tracing::Span::current();
        let tokenize = tracing::info_span!(parent: &parent, "tokenize", texts = n);
        let bytes: usize = texts.iter().map(String::len).sum();
        let encode = move || {
            let _span = tokenize.enter();
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            model.tokenizer().encode_rows(&refs)
        };
        let rows = if bytes <= INLINE_TOKENIZE_BYTES {
            encode()
        } else {
            tokenizing::run(deadline, encode)
                .await
                .map_err(|refused| match refused {
                    tokenizing::Refused::TimedOut => SubmitError::TimedOut(timeout),
                    tokenizing::Refused::Closed => SubmitError::Closed,
                })?
        }?;
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(Job {
                rows,
                options,
                deadline,
                reply,
                queued: Some(tracing::info_span!(parent: &parent, "queue", texts = n)),
                parent,
            })
            .map_err(|_| SubmitError::Closed)?;
        // From here the worker releases the queue slots.
        release.disarm();
        match tokio::time::timeout_at(deadline.into(), answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(SubmitError::Closed),
            Err(_) => Err(SubmitError::TimedOut(timeout)),
        }
    }
}

/// Gives queue slots back if a submission fails before its job reaches the worker.
struct Release<'a> {
    queued: &'a AtomicUsize,
    n: usize,
    armed: bool,
}

impl Release<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.queued.fetch_sub(self.n, Ordering::AcqRel);
        }
    }
}

struct Worker {
    model: Arc<EmbeddingModel>,
    receiver: mpsc::Receiver<Job>,
    queued: Arc<AtomicUsize>,
    config: BatchConfig,
    observer: BatchObserver,
}

impl Worker {
    fn run(self) {
        while let Ok(first) = self.receiver.recv() {
            let jobs = collect(&self.receiver, first, &self.queued, &self.config);
            let texts: usize = jobs.iter().map(|j| j.rows.len()).sum();
            self.process(jobs);
            self.queued.fetch_sub(texts, Ordering::AcqRel);
        }
    }

    /// Answers `jobs`: expired or abandoned ones are dropped, the rest share forward passes.
    fn process(&self, jobs: Vec<Job>) {
        let now = Instant::now();
        let mut live = Vec::with_capacity(jobs.len());
        for job in jobs {
            if job.reply.is_closed() {
                continue;
            }
            if job.deadline <= now {
                let _ = job.reply.send(Err(SubmitError::TimedOut(Duration::ZERO)));
                continue;
            }
            live.push(job);
        }
        if !live.is_empty() {
            self.run_jobs(live);
        }
    }

    /// Runs the inputs of `jobs` in passes, shortest first, and answers each job as soon as its
    /// last input is embedded.
    fn run_jobs(&self, jobs: Vec<Job>) {
        // Every input, shortest first, so that a pass pads little.
        let mut order: Vec<(usize, usize)> = jobs
            .iter()
            .enumerate()
            .flat_map(|(j, job)| (0..job.rows.len()).map(move |r| (j, r)))
            .collect();
        order.sort_by_key(|&(j, r)| jobs[j].rows[r].len());
        let mut answers = Answers {
            results: jobs
                .iter()
                .map(|j| vec![Vec::new(); j.rows.len()])
                .collect(),
            remaining: jobs.iter().map(|j| j.rows.len()).collect(),
            replies: Vec::with_capacity(jobs.len()),
        };
        let mut rows: Vec<Vec<TokenRow>> = Vec::with_capacity(jobs.len());
        let mut options: Vec<EmbedOptions> = Vec::with_capacity(jobs.len());
        let mut spans: Vec<(tracing::Span, Option<tracing::Span>)> = Vec::with_capacity(jobs.len());
        for job in jobs {
            answers.replies.push(Some(job.reply));
            rows.push(job.rows);
            options.push(job.options);
            spans.push((job.parent, job.queued));
        }
        let mut start = 0;
        while start < order.len() {
            let end = self.pass_end(&order, start, &rows);
            let pass: Vec<(usize, usize)> = order[start..end]
                .iter()
                .copied()
                .filter(|&(j, _)| answers.replies[j].is_some())
                .collect();
            start = end;
            if pass.is_empty() {
                continue;
            }
            // One `inference` span per pass, a child of the first request in it and linked to
            // the others; the waiting of every request in the pass ends here.
            let first = pass[0].0;
            let inference = tracing::info_span!(
                parent: &spans[first].0,
                "inference",
                model = %self.model.info().name,
                size = pass.len(),
                seq_len = pass.iter().map(|&(j, r)| rows[j][r].len()).max().unwrap_or(0),
            );
            for &(j, _) in &pass {
                spans[j].1.take();
                if j != first {
                    inference.follows_from(&spans[j].0);
                }
            }
            let _inference = inference.enter();
            match self.forward(&pass, &rows, &options) {
                Ok(vectors) => answers.deliver(&pass, vectors, &rows),
                Err(reason) => {
                    // One request's input can fail a pass (a token the model cannot embed):
                    // each request of a shared pass runs again alone, so that only the failing
                    // ones are answered with the error.
                    let mut owners: Vec<usize> = pass.iter().map(|&(j, _)| j).collect();
                    owners.sort_unstable();
                    owners.dedup();
                    if owners.len() == 1 {
                        answers.fail(&pass, &reason);
                        continue;
                    }
                    for j in owners {
                        let alone: Vec<(usize, usize)> =
                            pass.iter().copied().filter(|&(k, _)| k == j).collect();
                        match self.forward(&alone, &rows, &options) {
                            Ok(vectors) => answers.deliver(&alone, vectors, &rows),
                            Err(reason) => answers.fail(&alone, &reason),
                        }
                    }
                }
            }
        }
    }

    /// One forward pass over the inputs `pass` ((job, row) pairs), reported to the observer;
    /// the vectors in the order of `pass`, or why the pass failed.
    fn forward(
        &self,
        pass: &[(usize, usize)],
        rows: &[Vec<TokenRow>],
        options: &[EmbedOptions],
    ) -> Result<Vec<Vec<f32>>, String> {
        let batch =
            TokenBatch::from_rows(pass.iter().map(|&(j, r)| &rows[j][r]), self.model.pad_id());
        let options: Vec<EmbedOptions> = pass.iter().map(|&(j, _)| options[j]).collect();
        let started = Instant::now();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.model.embed_each(&batch, &options)
        }));
        match outcome {
            Ok(Ok(out)) => {
                (self.observer)(
                    &self.model.info().name,
                    BatchStats {
                        size: pass.len(),
                        tokens: batch.lengths.iter().sum(),
                        duration: started.elapsed(),
                    },
                );
                Ok(out.vectors)
            }
            // The cause alone: each request is answered `BatchFailed`, which says "inference
            // failed" itself.
            Ok(Err(EngineError::Inference(e))) => Err(e.to_string()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the forward pass panicked".to_string()),
        }
    }

    /// End of the pass that starts at `order[start]`: grow while the pass stays within the
    /// token budget and, where the encoder computes over padding, padding stays under half of
    /// the pass (inputs are sorted by length).
    fn pass_end(&self, order: &[(usize, usize)], start: usize, rows: &[Vec<TokenRow>]) -> usize {
        let len = |k: usize| {
            let (j, r) = order[k];
            rows[j][r].len()
        };
        let packed = self.model.skips_padding();
        let mut real = len(start);
        let mut end = start + 1;
        while end < order.len() {
            let longest = len(end);
            let padded = (end - start + 1) * longest;
            let over = if packed {
                real + longest > self.config.max_batch_tokens
            } else {
                padded > self.config.max_batch_tokens || padded > 2 * (real + longest)
            };
            if over {
                break;
            }
            real += longest;
            end += 1;
        }
        end
    }
}

/// The jobs the worker serves next: `first`, everything already waiting, and, within
/// `config.max_wait`, the jobs of texts admitted but still on their way (`admitted` counts the
/// texts not yet answered; the worker holds no other when it collects), until a pass's worth
/// of tokens (`config.max_batch_tokens`) is there. With nothing on its way it waits for nothing:
/// a lone request pays no batching delay, a burst shares passes.
fn collect(
    receiver: &mpsc::Receiver<Job>,
    first: Job,
    admitted: &AtomicUsize,
    config: &BatchConfig,
) -> Vec<Job> {
    let mut tokens = first.tokens();
    let mut texts = first.rows.len();
    let mut jobs = vec![first];
    let wait_until = Instant::now() + config.max_wait;
    while tokens < config.max_batch_tokens {
        let next = match receiver.try_recv() {
            Ok(job) => Some(job),
            Err(mpsc::TryRecvError::Disconnected) => None,
            Err(mpsc::TryRecvError::Empty) => {
                let now = Instant::now();
                let on_the_way = admitted.load(Ordering::Acquire) > texts;
                if !on_the_way || now >= wait_until {
                    None
                } else {
                    receiver.recv_timeout(wait_until - now).ok()
                }
            }
        };
        let Some(job) = next else { break };
        tokens += job.tokens();
        texts += job.rows.len();
        jobs.push(job);
    }
    jobs
}

/// The answers of the jobs a worker serves at once, filled pass by pass.
struct Answers {
    /// Each job's vectors so far, by input.
    results: Vec<Vec<Vec<f32>>>,
    /// Each job's inputs not embedded yet.
    remaining: Vec<usize>,
    /// Each job's reply, until it is sent.
    replies: Vec<Option<oneshot::Sender<Result<Embeddings, SubmitError>>>>,
}

impl Answers {
    /// Stores the vectors of `pass` and answers each job whose last input this was.
    fn deliver(&mut self, pass: &[(usize, usize)], vectors: Vec<Vec<f32>>, rows: &[Vec<TokenRow>]) {
        for (&(j, r), vector) in pass.iter().zip(vectors) {
            self.results[j][r] = vector;
            self.remaining[j] -= 1;
            if self.remaining[j] == 0 {
                if let Some(reply) = self.replies[j].take() {
                    let _ = reply.send(Ok(Embeddings {
                        vectors: std::mem::take(&mut self.results[j]),
                        token_counts: rows[j].iter().map(TokenRow::len).collect(),
                    }));
                }
            }
        }
    }

    /// Answers every job with an input in `pass` with the failure.
    fn fail(&mut self, pass: &[(usize, usize)], reason: &str) {
        for &(j, _) in pass {
            if let Some(reply) = self.replies[j].take() {
                let _ = reply.send(Err(SubmitError::Engine(EngineError::BatchFailed(
                    reason.to_string(),
                ))));
            }
        }
    }
}

#[cfg(test)]
mod tests;
