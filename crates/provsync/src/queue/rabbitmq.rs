//! RabbitMQ stage queues (`amqp://`), with lapin.
//!
//! - Quorum queues `<prefix>.transform` and `<prefix>.load` (durable, replicated,
//!   with a broker-side delivery count). A handler that fails a message on its last
//!   allowed attempt copies it to `<prefix>.dead` with the reason; the queues'
//!   `x-delivery-limit` is a fixed safety net above that, which dead-letters a
//!   message whose consumers died without a word (a poison message that crashes
//!   workers). Fixed, because queue arguments are set once: processes started with
//!   different `--max-attempts` must still be able to declare the same queues.
//! - Publisher confirms: `publish` returns once the broker has the message.
//! - Manual acknowledgement only: the caller acks after its effect is committed.
//! - `basic_qos(prefetch)` per consumer is the backpressure.
//! - After a broker restart, publishing reconnects and retries, and consumers
//!   resubscribe; unacknowledged messages come back (their effects are idempotent).
//!
//! `?prefix=NAME` in the URL names the queues (default `provsync`), so several
//! deployments or test runs can share a broker.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt as _;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::Confirmation;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use tokio::sync::{mpsc, Mutex};

use super::{Delivery, Headers, Queue, QueueError, Settle, StageQueue, REASON_HEADER};

/// How long `publish` keeps retrying through a broker outage.
const PUBLISH_PATIENCE: Duration = Duration::from_secs(60);
/// Broker-side bound on deliveries (see the module doc).
pub const BROKER_DELIVERY_LIMIT: i64 = 20;
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long a connection attempt may take: a broker that accepts TCP while it is
/// still starting (or a half-open peer) may never finish the AMQP handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// The RabbitMQ queue.
pub struct RabbitQueue {
    inner: Arc<Inner>,
}

struct Inner {
    /// The URL lapin connects with (without `prefix`).
    url: String,
    prefix: String,
    max_attempts: u32,
    /// Connection and confirm-mode channel for publishing, re-made after a failure.
    publisher: Mutex<Option<(Connection, Channel)>>,
}

fn broker(context: &str) -> impl Fn(lapin::Error) -> QueueError + '_ {
    move |e| QueueError::Broker(format!("{context}: {e}"))
}

/// Splits `?prefix=` off the URL; checks the prefix is a plain name.
fn parse_url(url: &str) -> Result<(String, String), QueueError> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, q),
        None => (url, ""),
    };
    let mut prefix = "provsync".to_owned();
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("prefix", v)) => prefix = v.to_owned(),
            _ => kept.push(pair),
        }
    }
    let plain = !prefix.is_empty()
        && prefix.len() <= 100
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !plain {
        return Err(QueueError::Url(format!(
            "prefix {prefix:?}: letters, digits, `.`, `_` and `-` only"
        )));
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, prefix))
}

impl Inner {
    fn name(&self, q: StageQueue) -> String {
        format!("{}.{}", self.prefix, q.as_str())
    }

    async fn connect(&self) -> Result<Connection, QueueError> {
        connect(&self.url).await.map_err(QueueError::Broker)
    }

    /// Declares the three queues (idempotent; the arguments must match earlier ones).
    async fn declare(&self, ch: &Channel) -> Result<(), QueueError> {
        let dead = self.name(StageQueue::Dead);
        let mut quorum = FieldTable::default();
        quorum.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        ch.queue_declare(
            dead.as_str().into(),
            QueueDeclareOptions::durable(),
            quorum.clone(),
        )
        .await
        .map_err(broker("declare the dead-letter queue"))?;
        let mut args = quorum;
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(BROKER_DELIVERY_LIMIT),
        );
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString("".into()),
        );
        args.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(dead.as_str().into()),
        );
        for q in [StageQueue::Transform, StageQueue::Load] {
            ch.queue_declare(
                self.name(q).as_str().into(),
                QueueDeclareOptions::durable(),
                args.clone(),
            )
            .await
            .map_err(broker("declare a stage queue"))?;
        }
        Ok(())
    }

    /// The broker's counts of a queue (a passive declare: it changes nothing).
    async fn look(&self, queue: StageQueue) -> Result<lapin::Queue, QueueError> {
        let ch = self.publisher().await?;
        // A failed passive declare closes the channel; `publisher` opens a new one.
        ch.queue_declare(
            self.name(queue).as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(broker("read the queue's counts"))
    }

    async fn publisher(&self) -> Result<Channel, QueueError> {
        let mut slot = self.publisher.lock().await;
        if let Some((conn, ch)) = slot.as_ref() {
            if conn.status().connected() && ch.status().connected() {
                return Ok(ch.clone());
            }
        }
        let conn = self.connect().await?;
        let ch = conn
            .create_channel()
            .await
            .map_err(broker("open a channel"))?;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(broker("enable publisher confirms"))?;
        self.declare(&ch).await?;
        *slot = Some((conn, ch.clone()));
        Ok(ch)
    }

    async fn publish_once(
        &self,
        queue: &str,
        headers: &Headers,
        body: &[u8],
    ) -> Result<(), QueueError> {
        let ch = self.publisher().await?;
        let mut table = FieldTable::default();
        for (k, v) in headers {
            table.insert(
                ShortString::from(k.as_str()),
                AMQPValue::LongString(LongString::from(v.as_str())),
            );
        }
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_headers(table);
        let confirm = ch
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                body,
                props,
            )
            .await
            .map_err(broker("publish"))?
            .await
            .map_err(broker("publisher confirm"))?;
        match confirm {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(_)) => Err(QueueError::Broker(format!(
                "queue {queue} does not exist: the message was returned"
            ))),
            Confirmation::Nack(_) => Err(QueueError::Broker(format!(
                "the broker refused to store a message for {queue}"
            ))),
            Confirmation::NotRequested => Err(QueueError::Broker(
                "publisher confirms are not enabled on the channel".into(),
            )),
        }
    }

    /// Publishes, reconnecting through a broker outage for up to [`PUBLISH_PATIENCE`].
    async fn publish(&self, queue: &str, headers: &Headers, body: &[u8]) -> Result<(), QueueError> {
        let started = tokio::time::Instant::now();
        let mut wait = Duration::from_millis(100);
        loop {
            match self.publish_once(queue, headers, body).await {
                Ok(()) => return Ok(()),
                Err(e) if started.elapsed() < PUBLISH_PATIENCE => {
                    tracing::warn!(queue, error = %e, "publish failed; reconnecting");
                    self.publisher.lock().await.take();
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(MAX_BACKOFF);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Connects to the broker an `amqp://` URL names. The error names the broker's
/// host:port and the cause (`Connection refused`, a refused login), never the
/// password.
pub async fn connect(url: &str) -> Result<Connection, String> {
    let (at, password) = match url.parse::<lapin::uri::AMQPUri>() {
        Ok(u) => (
            format!("{}:{}", u.authority.host, u.authority.port),
            Some(u.authority.userinfo.password).filter(|p| !p.is_empty()),
        ),
        Err(_) => (crate::secret::redact_urls(url), None),
    };
    let connecting = Connection::connect(url, ConnectionProperties::default());
    match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(connected) => connected.map_err(|e| {
            // lapin's messages may echo the URL.
            let cause = crate::secret::redact_urls(&crate::errors::chain(&e));
            let cause = crate::secret::redact(cause, password.as_deref());
            format!("cannot connect to RabbitMQ at {at}: {cause}")
        }),
        Err(_) => Err(format!(
            "cannot connect to RabbitMQ at {at}: no AMQP handshake within {} s",
            CONNECT_TIMEOUT.as_secs()
        )),
    }
}

impl RabbitQueue {
    /// Connects and declares the queues.
    pub async fn connect(url: &str, max_attempts: u32) -> Result<Self, QueueError> {
        let (url, prefix) = parse_url(url)?;
        let inner = Arc::new(Inner {
            url,
            prefix,
            max_attempts: max_attempts.max(1),
            publisher: Mutex::new(None),
        });
        inner.publisher().await?;
        Ok(Self { inner })
    }

    /// The queue names' prefix.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// Deletes this prefix's queues (tests and teardown).
    pub async fn delete_queues(&self) -> Result<(), QueueError> {
        let ch = self.inner.publisher().await?;
        for q in StageQueue::ALL {
            ch.queue_delete(
                self.inner.name(q).as_str().into(),
                lapin::options::QueueDeleteOptions::default(),
            )
            .await
            .map_err(broker("delete a queue"))?;
        }
        Ok(())
    }
}

/// Settles one RabbitMQ delivery.
struct RabbitSettle {
    inner: Arc<Inner>,
    acker: lapin::Acker,
    headers: Headers,
    body: Vec<u8>,
    attempt: u32,
}

impl RabbitSettle {
    /// Copies the message to the dead-letter queue with its reason, then acks it.
    async fn to_dead(self: Box<Self>, reason: &str) -> Result<(), QueueError> {
        let mut headers = self.headers.clone();
        headers.insert(REASON_HEADER.into(), reason.to_owned());
        let dead = self.inner.name(StageQueue::Dead);
        self.inner.publish(&dead, &headers, &self.body).await?;
        self.acker
            .ack(BasicAckOptions::default())
            .await
            .map_err(broker("ack"))?;
        Ok(())
    }
}

#[async_trait]
impl Settle for RabbitSettle {
    async fn ack(self: Box<Self>) -> Result<(), QueueError> {
        self.acker
            .ack(BasicAckOptions::default())
            .await
            .map_err(broker("ack"))?;
        Ok(())
    }

    async fn retry(self: Box<Self>, reason: &str) -> Result<(), QueueError> {
        if self.attempt >= self.inner.max_attempts {
            return self.to_dead(reason).await;
        }
        self.acker
            .nack(BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            })
            .await
            .map_err(broker("nack"))?;
        Ok(())
    }

    async fn dead_letter(self: Box<Self>, reason: &str) -> Result<(), QueueError> {
        self.to_dead(reason).await
    }
}

fn header_text(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        AMQPValue::LongLongInt(n) => Some(n.to_string()),
        AMQPValue::LongInt(n) => Some(n.to_string()),
        AMQPValue::LongUInt(n) => Some(n.to_string()),
        _ => None,
    }
}

fn delivery_from(inner: &Arc<Inner>, d: lapin::message::Delivery) -> Delivery {
    let mut headers = Headers::new();
    let mut returned: Option<u32> = None;
    if let Some(table) = d.properties.headers() {
        for (k, v) in table.inner() {
            if k.as_str() == "x-delivery-count" {
                returned = header_text(v).and_then(|n| n.parse().ok());
            } else if let Some(text) = header_text(v) {
                headers.insert(k.as_str().to_owned(), text);
            }
        }
    }
    let attempt = match returned {
        Some(n) => n + 1,
        None if d.redelivered => 2,
        None => 1,
    };
    let settle = RabbitSettle {
        inner: inner.clone(),
        acker: d.acker.clone(),
        headers: headers.clone(),
        body: d.data.clone(),
        attempt,
    };
    Delivery::new(d.data, headers, attempt, Box::new(settle))
}

#[async_trait]
impl Queue for RabbitQueue {
    async fn publish(
        &self,
        queue: StageQueue,
        headers: &Headers,
        body: &[u8],
    ) -> Result<(), QueueError> {
        self.inner
            .publish(&self.inner.name(queue), headers, body)
            .await
    }

    async fn consume(
        &self,
        queue: StageQueue,
        prefetch: u16,
    ) -> Result<mpsc::Receiver<Delivery>, QueueError> {
        let (tx, rx) = mpsc::channel(usize::from(prefetch.max(1)));
        let inner = self.inner.clone();
        let name = inner.name(queue);
        tokio::spawn(async move {
            let mut wait = Duration::from_millis(100);
            while !tx.is_closed() {
                let subscribed = async {
                    let conn = inner.connect().await?;
                    let ch = conn
                        .create_channel()
                        .await
                        .map_err(broker("open a channel"))?;
                    inner.declare(&ch).await?;
                    ch.basic_qos(prefetch.max(1), BasicQosOptions::default())
                        .await
                        .map_err(broker("set prefetch"))?;
                    let consumer = ch
                        .basic_consume(
                            name.as_str().into(),
                            "".into(),
                            BasicConsumeOptions::default(),
                            FieldTable::default(),
                        )
                        .await
                        .map_err(broker("consume"))?;
                    Ok::<_, QueueError>((conn, ch, consumer))
                }
                .await;
                let (_conn, _ch, mut consumer) = match subscribed {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(queue = %name, error = %e, "cannot subscribe; retrying");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(MAX_BACKOFF);
                        continue;
                    }
                };
                wait = Duration::from_millis(100);
                loop {
                    tokio::select! {
                        next = consumer.next() => match next {
                            Some(Ok(d)) => {
                                if tx.send(delivery_from(&inner, d)).await.is_err() {
                                    // Unacked deliveries go back when the channel closes.
                                    return;
                                }
                            }
                            Some(Err(e)) => {
                                tracing::warn!(queue = %name, error = %e, "consumer failed; resubscribing");
                                break;
                            }
                            None => break,
                        },
                        _ = tx.closed() => return,
                    }
                }
                tokio::time::sleep(wait).await;
            }
        });
        Ok(rx)
    }

    async fn depth(&self, queue: StageQueue) -> Result<u64, QueueError> {
        Ok(u64::from(self.inner.look(queue).await?.message_count()))
    }

    async fn consumers(&self, queue: StageQueue) -> Result<u32, QueueError> {
        Ok(self.inner.look(queue).await?.consumer_count())
    }

    fn max_attempts(&self) -> u32 {
        self.inner.max_attempts
    }

    async fn teardown(&self) -> Result<(), QueueError> {
        self.delete_queues().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_split_off_and_checked() {
        assert_eq!(
            parse_url("amqp://g:g@h:5672/%2f?prefix=t1&heartbeat=5").unwrap(),
            (
                "amqp://g:g@h:5672/%2f?heartbeat=5".to_owned(),
                "t1".to_owned()
            )
        );
        assert_eq!(parse_url("amqp://h").unwrap().1, "provsync");
        assert!(parse_url("amqp://h?prefix=a/b").is_err());
    }
}
