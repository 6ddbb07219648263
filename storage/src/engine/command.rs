//! What a Raft log entry asks of a shard, and how it travels (write batches packed).

use super::*;

/// What a Raft log entry asks of a shard. Serialized through [`CommandWire`]: writes as [`crate::packed`]
/// batches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "CommandWire", try_from = "CommandWire")]
pub enum Command {
    /// Client batches coalesced into one entry (group commit); each gets its own [`ApplyResult`]. Shared,
    /// so a coordinator keeps its batch for a retry without copying it.
    Write(Vec<Arc<Vec<Point>>>),
    /// Periodic maintenance with the leader's clock.
    Maintain { now_ms: i64 },
    /// Replicated key-value state of actors that run on the shard's leader (alerting: rule states, the
    /// notification outbox). Applied atomically; kept with the shard's data, so it travels in snapshots.
    State { puts: Vec<(Vec<u8>, Vec<u8>)>, deletes: Vec<Vec<u8>> },
}

/// The serialized form of [`Command`]. Variants keep their positions (bincode numbers them), so entries
/// logged before the packed form existed still decode.
#[derive(Serialize, Deserialize)]
enum CommandWire {
    /// Batches as plain structures: only read, from logs written before `PackedWrite`.
    Write(Vec<Vec<Point>>),
    Maintain {
        now_ms: i64,
    },
    State {
        puts: Vec<(Vec<u8>, Vec<u8>)>,
        deletes: Vec<Vec<u8>>,
    },
    /// Each batch in [`crate::packed`] form.
    PackedWrite(Vec<PackedBatch>),
}

/// One batch's packed bytes (serialized as a byte string).
struct PackedBatch(Vec<u8>);

impl Serialize for PackedBatch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for PackedBatch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = PackedBatch;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a packed point batch")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> std::result::Result<PackedBatch, E> {
                Ok(PackedBatch(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> std::result::Result<PackedBatch, E> {
                Ok(PackedBatch(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> std::result::Result<PackedBatch, A::Error> {
                let mut v = Vec::with_capacity(a.size_hint().unwrap_or(0).min(1 << 20));
                while let Some(b) = a.next_element()? {
                    v.push(b);
                }
                Ok(PackedBatch(v))
            }
        }
        d.deserialize_bytes(V)
    }
}

impl From<Command> for CommandWire {
    fn from(c: Command) -> CommandWire {
        match c {
            Command::Write(batches) => {
                CommandWire::PackedWrite(batches.iter().map(|b| PackedBatch(crate::packed::to_vec(b))).collect())
            }
            Command::Maintain { now_ms } => CommandWire::Maintain { now_ms },
            Command::State { puts, deletes } => CommandWire::State { puts, deletes },
        }
    }
}

impl TryFrom<CommandWire> for Command {
    type Error = crate::packed::PackedError;
    fn try_from(c: CommandWire) -> std::result::Result<Command, Self::Error> {
        Ok(match c {
            CommandWire::Write(batches) => Command::Write(batches.into_iter().map(Arc::new).collect()),
            CommandWire::PackedWrite(batches) => Command::Write(
                batches
                    .iter()
                    .map(|b| crate::packed::decode(&b.0).map(Arc::new))
                    .collect::<std::result::Result<_, _>>()?,
            ),
            CommandWire::Maintain { now_ms } => Command::Maintain { now_ms },
            CommandWire::State { puts, deletes } => Command::State { puts, deletes },
        })
    }
}

impl Command {
    /// A write of one batch.
    pub fn write(points: Vec<Point>) -> Command {
        Command::Write(vec![Arc::new(points)])
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyResult {
    pub samples_written: u64,
    /// Samples older than the series' newest sample minus the out-of-order window.
    pub rejected_too_old: u64,
    /// Samples older than the raw retention of their series (already expired).
    pub rejected_expired: u64,
    pub series_created: u64,
    /// Samples refused before they were proposed, because they would have created series over a series
    /// limit (the leader's check, see the node's writer), and the first limit they met.
    #[serde(default)]
    pub rejected_series_limit: u64,
    #[serde(default)]
    pub series_limit: Option<String>,
}
