//! The in-process queue (`memory://`): the same contract as RabbitMQ within one
//! process (prefetch, redelivery of unsettled messages, bounded attempts, a dead-letter
//! queue), for the embedded runtime and for tests. Nothing survives the process.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};

use super::{Delivery, Headers, Queue, QueueError, Settle, StageQueue, REASON_HEADER};

#[derive(Debug, Clone)]
struct Message {
    headers: Headers,
    body: Vec<u8>,
    attempt: u32,
}

#[derive(Default)]
struct Shared {
    queues: Mutex<HashMap<StageQueue, VecDeque<Message>>>,
    ready: HashMap<StageQueue, Notify>,
    consumers: HashMap<StageQueue, AtomicU32>,
}

/// Counts one consumer of a queue while it lives.
struct Consuming(Arc<Shared>, StageQueue);

impl Consuming {
    fn new(shared: Arc<Shared>, queue: StageQueue) -> Self {
        shared.consumers[&queue].fetch_add(1, Ordering::Relaxed);
        Self(shared, queue)
    }
}

impl Drop for Consuming {
    fn drop(&mut self) {
        self.0.consumers[&self.1].fetch_sub(1, Ordering::Relaxed);
    }
}

impl Shared {
    fn push(&self, queue: StageQueue, m: Message) {
        self.queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(queue)
            .or_default()
            .push_back(m);
        self.ready[&queue].notify_one();
    }

    fn pop(&self, queue: StageQueue) -> Option<Message> {
        self.queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&queue)
            .and_then(VecDeque::pop_front)
    }
}

/// The in-process queue.
#[derive(Clone)]
pub struct MemoryQueue {
    shared: Arc<Shared>,
    max_attempts: u32,
}

impl MemoryQueue {
    /// An empty queue that dead-letters a message after `max_attempts` deliveries.
    pub fn new(max_attempts: u32) -> Self {
        let ready = StageQueue::ALL
            .iter()
            .map(|q| (*q, Notify::new()))
            .collect();
        let consumers = StageQueue::ALL
            .iter()
            .map(|q| (*q, AtomicU32::new(0)))
            .collect();
        Self {
            shared: Arc::new(Shared {
                queues: Mutex::default(),
                ready,
                consumers,
            }),
            max_attempts: max_attempts.max(1),
        }
    }
}

/// Settles one in-process delivery; dropped unsettled, the message is delivered again.
struct MemorySettle {
    shared: Arc<Shared>,
    queue: StageQueue,
    message: Option<Message>,
    max_attempts: u32,
    _permit: OwnedSemaphorePermit,
}

impl MemorySettle {
    fn requeue_or_dead(&mut self, reason: Option<&str>, force_dead: bool) {
        let Some(mut m) = self.message.take() else {
            return;
        };
        if force_dead || m.attempt >= self.max_attempts {
            if let Some(r) = reason {
                m.headers.insert(REASON_HEADER.into(), r.to_owned());
            }
            self.shared.push(StageQueue::Dead, m);
        } else {
            m.attempt += 1;
            self.shared.push(self.queue, m);
        }
    }
}

impl Drop for MemorySettle {
    fn drop(&mut self) {
        // Like a consumer that died holding it: the broker delivers it again.
        self.requeue_or_dead(
            Some("the consumer dropped the message without settling it"),
            false,
        );
    }
}

#[async_trait]
impl Settle for MemorySettle {
    async fn ack(mut self: Box<Self>) -> Result<(), QueueError> {
        self.message = None;
        Ok(())
    }

    async fn retry(mut self: Box<Self>, reason: &str) -> Result<(), QueueError> {
        self.requeue_or_dead(Some(reason), false);
        Ok(())
    }

    async fn dead_letter(mut self: Box<Self>, reason: &str) -> Result<(), QueueError> {
        self.requeue_or_dead(Some(reason), true);
        Ok(())
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn publish(
        &self,
        queue: StageQueue,
        headers: &Headers,
        body: &[u8],
    ) -> Result<(), QueueError> {
        self.shared.push(
            queue,
            Message {
                headers: headers.clone(),
                body: body.to_vec(),
                attempt: 1,
            },
        );
        Ok(())
    }

    async fn consume(
        &self,
        queue: StageQueue,
        prefetch: u16,
    ) -> Result<mpsc::Receiver<Delivery>, QueueError> {
        let (tx, rx) = mpsc::channel(usize::from(prefetch.max(1)));
        let permits = Arc::new(Semaphore::new(usize::from(prefetch.max(1))));
        let shared = self.shared.clone();
        let max_attempts = self.max_attempts;
        let consuming = Consuming::new(shared.clone(), queue);
        tokio::spawn(async move {
            let _consuming = consuming;
            loop {
                // A receiver dropped with deliveries still buffered holds their
                // permits: wait for one only while the receiver lives, so the
                // buffered deliveries are dropped (and requeued) with the channel.
                let permit = tokio::select! {
                    p = permits.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => return,
                    },
                    _ = tx.closed() => return,
                };
                // A slot in the channel first, so a message is only taken off the
                // queue when it can be handed over at once (a message dropped for a
                // closed receiver would count as a delivery).
                let Ok(slot) = tx.reserve().await else {
                    return;
                };
                let message = loop {
                    let notified = shared.ready[&queue].notified();
                    if let Some(m) = shared.pop(queue) {
                        break m;
                    }
                    tokio::select! {
                        _ = notified => {}
                        _ = tx.closed() => return,
                    }
                };
                slot.send(Delivery::new(
                    message.body.clone(),
                    message.headers.clone(),
                    message.attempt,
                    Box::new(MemorySettle {
                        shared: shared.clone(),
                        queue,
                        message: Some(message),
                        max_attempts,
                        _permit: permit,
                    }),
                ));
            }
        });
        Ok(rx)
    }

    async fn depth(&self, queue: StageQueue) -> Result<u64, QueueError> {
        Ok(self
            .shared
            .queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&queue)
            .map_or(0, |q| q.len() as u64))
    }

    async fn consumers(&self, queue: StageQueue) -> Result<u32, QueueError> {
        Ok(self.shared.consumers[&queue].load(Ordering::Relaxed))
    }

    fn max_attempts(&self) -> u32 {
        self.max_attempts
    }
}
