//! Error → gRPC status mapping, in one place: handlers use `?`.

use tonic::{Code, Status};

use crate::batcher::BatchError;
use crate::swap::SwapError;

impl From<BatchError> for Status {
    fn from(e: BatchError) -> Status {
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
}

impl From<SwapError> for Status {
    fn from(e: SwapError) -> Status {
        let code = match &e {
            SwapError::NotFound(..) => Code::NotFound,
            SwapError::Refused { .. } | SwapError::NoPrevious => Code::FailedPrecondition,
            SwapError::Share(_) => Code::InvalidArgument,
        };
        Status::new(code, e.to_string())
    }
}
