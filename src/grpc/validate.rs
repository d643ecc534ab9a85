//! Input limits. Every refusal is INVALID_ARGUMENT naming the field and the limit.

use tonic::Status;

use crate::config::Limits;

pub fn text(field: &str, value: &str, limits: &Limits) -> Result<(), Status> {
    if value.trim().is_empty() {
        return Err(Status::invalid_argument(format!(
            "{field} must not be empty or whitespace only"
        )));
    }
    if value.len() > limits.max_text_bytes {
        return Err(Status::invalid_argument(format!(
            "{field} is {} bytes; the limit is {} bytes (UTF-8)",
            value.len(),
            limits.max_text_bytes
        )));
    }
    Ok(())
}

pub fn texts(field: &str, values: &[String], limits: &Limits) -> Result<(), Status> {
    if values.is_empty() {
        return Err(Status::invalid_argument(format!(
            "{field} must hold at least 1 text"
        )));
    }
    if values.len() > limits.max_batch_texts {
        return Err(Status::invalid_argument(format!(
            "{field} holds {} texts; the limit is {} per call",
            values.len(),
            limits.max_batch_texts
        )));
    }
    for (i, v) in values.iter().enumerate() {
        text(&format!("{field}[{i}]"), v, limits)?;
    }
    Ok(())
}

pub fn id(field: &str, value: &str, required: bool, limits: &Limits) -> Result<(), Status> {
    if required && value.is_empty() {
        return Err(Status::invalid_argument(format!("{field} is required")));
    }
    if value.len() > limits.max_id_bytes {
        return Err(Status::invalid_argument(format!(
            "{field} is {} bytes; the limit is {} bytes",
            value.len(),
            limits.max_id_bytes
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(Status::invalid_argument(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(())
}

/// Proto3 keeps unknown enum numbers as plain integers: refuse them instead of guessing.
pub fn enum_value<E: TryFrom<i32>>(field: &str, value: i32) -> Result<E, Status> {
    E::try_from(value)
        .map_err(|_| Status::invalid_argument(format!("{field} = {value} is not a known value")))
}
