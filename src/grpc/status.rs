//! Error → gRPC status mapping, in one place.

use tonic::{Code, Status};

use crate::batcher::BatchError;

pub fn from_batch(e: BatchError) -> Status {
    let code = match &e {
        BatchError::QueueFull { .. } | BatchError::WouldMissDeadline { .. } => {
            Code::ResourceExhausted
        }
        BatchError::NoModel | BatchError::ShuttingDown => Code::Unavailable,
        BatchError::DeadlineExceeded => Code::DeadlineExceeded,
        BatchError::Inference(_) => Code::Internal,
    };
    Status::new(code, e.to_string())
}
