//! Dynamic batching across requests: one bounded queue and one inference thread per model.
//!
//! Requests are admitted by text count (a full queue is refused at once, so callers can answer
//! 429 instead of letting latency grow), tokenized by the caller off the async runtime, and
//! picked up by the model's inference thread, which takes everything already waiting, groups
//! inputs of similar length and runs forward passes bounded by a padded-token budget.

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
};

/// How the batcher forms batches.
#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    /// Texts that may wait per model before new work is refused.
    pub queue_capacity: usize,
    /// Tokens per forward pass: real tokens where the encoder skips padding, else padded ones
    /// (rows × longest row).
    pub max_batch_tokens: usize,
    /// Extra time to wait for more work when a batch is not full (0: take only what is queued).
    pub max_wait: Duration,
}

/// What happened in one forward pass, for metrics.
#[derive(Debug, Clone, Copy)]
pub struct BatchStats {
    /// Inputs in the pass.
    pub size: usize,
    /// Real tokens in the pass.
    pub tokens: usize,
    /// Padded tokens in the pass.
    pub padded_tokens: usize,
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
        let permit = tokio::time::timeout_at(deadline.into(), tokenizers().acquire())
            .await
            .map_err(|_| SubmitError::TimedOut(timeout))?
            .map_err(|_| SubmitError::Closed)?;
        let rows = tokio::task::spawn_blocking(move || {
            let _span = tokenize.enter();
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            model.tokenizer().encode_rows(&refs)
        })
        .await
        .map_err(|_| SubmitError::Closed)??;
        drop(permit);
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

/// Tokenizations running at once, across every model: one per core. Under overload the
/// inference threads hold the cores, tokenizations stall, and without a bound the runtime
/// starts a blocking thread for each waiting request (150 seen at 1.5× capacity, each with its
/// stack and allocator heap: 200 MB more at peak) for no throughput.
fn tokenizers() -> &'static tokio::sync::Semaphore {
    static PERMITS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    PERMITS.get_or_init(|| {
        tokio::sync::Semaphore::new(thread::available_parallelism().map_or(2, |n| n.get()))
    })
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
            let mut jobs = vec![first];
            let mut rows: usize = jobs[0].rows.len();
            let wait_until = Instant::now() + self.config.max_wait;
            loop {
                let next = match self.receiver.try_recv() {
                    Ok(job) => Some(job),
                    Err(mpsc::TryRecvError::Disconnected) => None,
                    Err(mpsc::TryRecvError::Empty) => {
                        let now = Instant::now();
                        if now >= wait_until {
                            None
                        } else {
                            self.receiver.recv_timeout(wait_until - now).ok()
                        }
                    }
                };
                match next {
                    Some(job) => {
                        rows += job.rows.len();
                        jobs.push(job);
                        // Enough work for several full passes: start now.
                        if rows * 8 >= self.config.max_batch_tokens {
                            break;
                        }
                    }
                    None => break,
                }
            }
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
        // Jobs with the same options share passes; options only change pooling, but grouping
        // keeps each pass uniform.
        while !live.is_empty() {
            let options = live[0].options;
            let (group, rest): (Vec<Job>, Vec<Job>) =
                live.into_iter().partition(|j| j.options == options);
            live = rest;
            self.run_group(group, options);
        }
    }

    fn run_group(&self, jobs: Vec<Job>, options: EmbedOptions) {
        // Every input, shortest first, so that a pass pads little.
        let mut order: Vec<(usize, usize)> = jobs
            .iter()
            .enumerate()
            .flat_map(|(j, job)| (0..job.rows.len()).map(move |r| (j, r)))
            .collect();
        order.sort_by_key(|&(j, r)| jobs[j].rows[r].len());
        let mut results: Vec<Vec<Vec<f32>>> = jobs
            .iter()
            .map(|j| vec![Vec::new(); j.rows.len()])
            .collect();
        let mut remaining: Vec<usize> = jobs.iter().map(|j| j.rows.len()).collect();
        let mut replies: Vec<Option<oneshot::Sender<_>>> = Vec::with_capacity(jobs.len());
        let mut rows: Vec<Vec<TokenRow>> = Vec::with_capacity(jobs.len());
        let mut spans: Vec<(tracing::Span, Option<tracing::Span>)> = Vec::with_capacity(jobs.len());
        for job in jobs {
            replies.push(Some(job.reply));
            rows.push(job.rows);
            spans.push((job.parent, job.queued));
        }
        let mut start = 0;
        while start < order.len() {
            let end = self.pass_end(&order, start, &rows);
            let pass: Vec<(usize, usize)> = order[start..end]
                .iter()
                .copied()
                .filter(|&(j, _)| replies[j].is_some())
                .collect();
            start = end;
            if pass.is_empty() {
                continue;
            }
            let batch =
                TokenBatch::from_rows(pass.iter().map(|&(j, r)| &rows[j][r]), self.model.pad_id());
            // One `inference` span per pass, a child of the first request in it and linked to
            // the others; the waiting of every request in the pass ends here.
            let first = pass[0].0;
            let inference = tracing::info_span!(
                parent: &spans[first].0,
                "inference",
                model = %self.model.info().name,
                size = pass.len(),
                seq_len = batch.seq_len,
            );
            for &(j, _) in &pass {
                spans[j].1.take();
                if j != first {
                    inference.follows_from(&spans[j].0);
                }
            }
            let _inference = inference.enter();
            let started = Instant::now();
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.model.embed_batch(&batch, options)
            }));
            let out = match outcome {
                Ok(Ok(out)) => out,
                Ok(Err(e)) => {
                    fail(&pass, &mut replies, &e.to_string());
                    continue;
                }
                Err(_) => {
                    fail(&pass, &mut replies, "the forward pass panicked");
                    continue;
                }
            };
            (self.observer)(
                &self.model.info().name,
                BatchStats {
                    size: pass.len(),
                    tokens: batch.lengths.iter().sum(),
                    padded_tokens: if self.model.skips_padding() {
                        batch.lengths.iter().sum()
                    } else {
                        batch.len() * batch.seq_len
                    },
                    duration: started.elapsed(),
                },
            );
            for (&(j, r), vector) in pass.iter().zip(out.vectors) {
                results[j][r] = vector;
                remaining[j] -= 1;
                // Answer each request as soon as its last input is embedded.
                if remaining[j] == 0 {
                    if let Some(reply) = replies[j].take() {
                        let _ = reply.send(Ok(Embeddings {
                            vectors: std::mem::take(&mut results[j]),
                            token_counts: rows[j].iter().map(TokenRow::len).collect(),
                        }));
                    }
                }
            }
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

/// Answers every request with an input in a failed pass.
fn fail(
    pass: &[(usize, usize)],
    replies: &mut [Option<oneshot::Sender<Result<Embeddings, SubmitError>>>],
    reason: &str,
) {
    for &(j, _) in pass {
        if let Some(reply) = replies[j].take() {
            let _ = reply.send(Err(SubmitError::Engine(EngineError::BatchFailed(
                reason.to_string(),
            ))));
        }
    }
}
