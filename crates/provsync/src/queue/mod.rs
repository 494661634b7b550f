//! Stage queues (DESIGN section 6): the distributed runtime hands pages between
//! stages through durable queues, one per stage, with manual acknowledgement after
//! the stage's effect is committed, prefetch as backpressure, bounded redelivery
//! and a dead-letter queue. Chosen by URL: `memory://` (in-process, for the
//! embedded runtime and tests) or `amqp://` (RabbitMQ). One conformance suite runs
//! against both.
//!
//! Messages carry whole pages, never single records; every stage effect is keyed
//! by job and page in the store, so a redelivered message changes nothing.

pub mod memory;
pub mod rabbitmq;

#[cfg(test)]
mod conformance;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;

/// A stage queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StageQueue {
    /// Raw pages from extraction, to be mapped.
    Transform,
    /// Mapped pages, to be loaded.
    Load,
    /// Messages that failed every allowed attempt.
    Dead,
}

impl StageQueue {
    /// Every stage queue.
    pub const ALL: [StageQueue; 3] = [StageQueue::Transform, StageQueue::Load, StageQueue::Dead];

    /// The queue's short name (`transform`, `load`, `dead`).
    pub fn as_str(self) -> &'static str {
        match self {
            StageQueue::Transform => "transform",
            StageQueue::Load => "load",
            StageQueue::Dead => "dead",
        }
    }
}

/// Headers every message carries, so a message whose body cannot be read can
/// still be attributed to its job and page.
pub const JOB_HEADER: &str = "x-provsync-job";
/// The page number header.
pub const PAGE_HEADER: &str = "x-provsync-page";
/// Why a message was dead-lettered (set when a handler gives up on it).
pub const REASON_HEADER: &str = "x-provsync-reason";

/// A message's headers (string values).
pub type Headers = BTreeMap<String, String>;

/// A queue failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueueError {
    /// The URL is not one this build understands.
    #[error("queue URL: {0}")]
    Url(String),
    /// The broker refused or dropped us (after the queue's own retries).
    #[error("queue broker: {0}")]
    Broker(String),
    /// The queue is closed.
    #[error("queue closed")]
    Closed,
}

/// What the consumer does with a delivery, once.
#[async_trait]
pub trait Settle: Send + Sync {
    /// The effect is committed: remove the message.
    async fn ack(self: Box<Self>) -> Result<(), QueueError>;
    /// Handling failed: deliver it again, or dead-letter it once the attempts are
    /// spent (with `reason` when the queue can carry it).
    async fn retry(self: Box<Self>, reason: &str) -> Result<(), QueueError>;
    /// Give up now: dead-letter it with `reason`.
    async fn dead_letter(self: Box<Self>, reason: &str) -> Result<(), QueueError>;
}

/// One delivered message.
pub struct Delivery {
    /// The body.
    pub body: Vec<u8>,
    /// The headers.
    pub headers: Headers,
    /// 1 on first delivery, then 2, 3...
    pub attempt: u32,
    settle: Box<dyn Settle>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("bytes", &self.body.len())
            .field("headers", &self.headers)
            .field("attempt", &self.attempt)
            .finish()
    }
}

impl Delivery {
    /// A delivery settled through `settle`.
    pub fn new(body: Vec<u8>, headers: Headers, attempt: u32, settle: Box<dyn Settle>) -> Self {
        Self {
            body,
            headers,
            attempt,
            settle,
        }
    }

    /// Acknowledges the message (after its effect is committed).
    pub async fn ack(self) -> Result<(), QueueError> {
        self.settle.ack().await
    }

    /// Redelivers it, or dead-letters it when its attempts are spent.
    pub async fn retry(self, reason: &str) -> Result<(), QueueError> {
        self.settle.retry(reason).await
    }

    /// Dead-letters it now.
    pub async fn dead_letter(self, reason: &str) -> Result<(), QueueError> {
        self.settle.dead_letter(reason).await
    }

    /// The job it belongs to, from its headers.
    pub fn job(&self) -> Option<&str> {
        self.headers.get(JOB_HEADER).map(String::as_str)
    }

    /// The page it carries, from its headers.
    pub fn page(&self) -> Option<u64> {
        self.headers.get(PAGE_HEADER).and_then(|p| p.parse().ok())
    }
}

/// A durable, at-least-once queue per stage.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Publishes a message; returns once the broker has confirmed it is stored.
    async fn publish(
        &self,
        queue: StageQueue,
        headers: &Headers,
        body: &[u8],
    ) -> Result<(), QueueError>;
    /// Starts consuming with at most `prefetch` unacknowledged messages in hand;
    /// deliveries arrive on the receiver until the queue is closed. Survives broker
    /// restarts (the consumer resubscribes).
    async fn consume(
        &self,
        queue: StageQueue,
        prefetch: u16,
    ) -> Result<mpsc::Receiver<Delivery>, QueueError>;
    /// Messages waiting (not counting those delivered and unacknowledged).
    async fn depth(&self, queue: StageQueue) -> Result<u64, QueueError>;
    /// Consumers subscribed to the queue, in every process (the driver of a
    /// distributed run says so when no worker consumes).
    async fn consumers(&self, queue: StageQueue) -> Result<u32, QueueError>;
    /// Deliveries allowed before a message is dead-lettered.
    fn max_attempts(&self) -> u32;
    /// Deletes this deployment's queues and what they hold (tests, teardown).
    async fn teardown(&self) -> Result<(), QueueError> {
        Ok(())
    }
}

/// Opens the queue a URL names: `memory://` or `amqp://user:pass@host:port/vhost`.
/// `max_attempts` bounds redelivery (then the message goes to the dead-letter queue).
pub async fn open(url: &str, max_attempts: u32) -> Result<Arc<dyn Queue>, QueueError> {
    let scheme = url.split("://").next().unwrap_or_default();
    match scheme {
        "memory" => Ok(Arc::new(memory::MemoryQueue::new(max_attempts))),
        "amqp" => Ok(Arc::new(
            rabbitmq::RabbitQueue::connect(url, max_attempts).await?,
        )),
        _ => Err(QueueError::Url(format!(
            "unsupported queue URL scheme {scheme:?}: expected memory:// or amqp://..."
        ))),
    }
}
