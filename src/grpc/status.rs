//! Error → gRPC status mapping, in one place: handlers use `?`.

use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::batcher::BatchError;
use crate::swap::SwapError;

/// RESOURCE_EXHAUSTED with a `google.rpc.RetryInfo` saying when a retry has a chance (the work
/// queued ahead, the caller's next token), for clients that back off by it.
pub fn exhausted(message: impl Into<String>, retry_after: Duration) -> Status {
    // Never "retry now": a zero delay invites a hot loop.
    let delay = retry_after.max(Duration::from_millis(10));
    Status::with_error_details(
        Code::ResourceExhausted,
        message,
        ErrorDetails::with_retry_info(Some(delay)),
    )
}

impl From<BatchError> for Status {
    fn from(e: BatchError) -> Status {
        let code = match &e {
            BatchError::QueueFull { wait_ms, .. } | BatchError::WouldMissDeadline { wait_ms } => {
                return exhausted(e.to_string(), Duration::from_millis(*wait_ms));
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

/// The Feedback RPC's answer for what the journal did with it; counted by outcome.
pub fn feedback(
    outcome: crate::decision_log::FeedbackOutcome,
    id: &uuid::Uuid,
) -> Result<super::pb::FeedbackResponse, Status> {
    use crate::decision_log::FeedbackOutcome as O;
    let label = match &outcome {
        O::New => "recorded",
        O::Duplicate => "duplicate",
        O::Conflict => "conflict",
        O::Unknown => "unknown",
        O::Busy => "busy",
        O::Unwritten(_) => "unwritten",
    };
    metrics::counter!(crate::telemetry::FEEDBACK, "outcome" => label).increment(1);
    match outcome {
        O::New | O::Duplicate => Ok(super::pb::FeedbackResponse {
            recorded: outcome == O::New,
        }),
        O::Conflict => Err(Status::already_exists(format!(
            "decision_id {id} already has different feedback"
        ))),
        O::Unknown => Err(Status::not_found(format!(
            "decision_id {id} is unknown here or older than the feedback window"
        ))),
        O::Busy => Err(Status::unavailable(
            "the decision log is behind: feedback not recorded, retry",
        )),
        O::Unwritten(why) => Err(Status::unavailable(format!(
            "the decision log could not write the feedback ({why}): not recorded, retry"
        ))),
    }
}
