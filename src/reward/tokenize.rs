//! Turning (conversation, candidate) into the reward model's input ids, and padding a batch.
//!
//! With a chat template the whole conversation plus the candidate as the final assistant turn is rendered and
//! tokenized without special tokens (the template already has them), as `apply_chat_template(tokenize=True)` does.
//! Without one, the (last user message, candidate) pair goes through the tokenizer's pair post-processor, as encoder
//! reward models were trained. Either way sequences over the limit lose tokens from the left, so the end of the
//! response (what the reward model judges last) survives.

use serde_json::Value;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use super::{RewardError, ScoreInput, template::ChatTemplate};

/// One encoded sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub ids: Vec<i64>,
    pub type_ids: Vec<i64>,
}

/// Tokenizer + optional chat template, configured for left truncation and no padding.
pub struct Encoder {
    tokenizer: Tokenizer,
    template: Option<ChatTemplate>,
}

impl Encoder {
    pub fn new(
        mut tokenizer: Tokenizer,
        template: Option<ChatTemplate>,
        max_tokens: usize,
    ) -> Result<Self, RewardError> {
        // Padding is ours (right, with the model's pad id); truncation keeps the end of the sequence.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Left,
            }))
            .map_err(|e| RewardError::Load(format!("tokenizer truncation: {e}")))?;
        Ok(Self { tokenizer, template })
    }

    /// Whether the model formats input with a chat template (else: pair encoding).
    pub fn has_template(&self) -> bool {
        self.template.is_some()
    }

    /// The text the chat template renders for `input` (None without a template).
    pub fn render(&self, input: &ScoreInput) -> Result<Option<String>, RewardError> {
        self.render_with(input, None)
    }

    /// `render`, with `input.conversation` already serialised to JSON (`conversation`), as the tokenization stage
    /// passes it: once per call, not once per candidate.
    pub fn render_with(
        &self,
        input: &ScoreInput,
        conversation: Option<&[Value]>,
    ) -> Result<Option<String>, RewardError> {
        let Some(template) = &self.template else { return Ok(None) };
        let json = |m: &crate::openai::Message| serde_json::to_value(m).map_err(|e| RewardError::Input(e.to_string()));
        let mut messages = Vec::with_capacity(input.conversation.len() + 1);
        match conversation {
            Some(history) => messages.extend_from_slice(history),
            None => {
                for m in input.conversation.iter() {
                    messages.push(json(m)?);
                }
            }
        }
        messages.push(json(&input.response)?);
        let rendered = template
            .render(&messages, input.tools.as_deref())
            .map_err(|e| RewardError::Input(format!("chat template: {e}")))?;
        Ok(Some(rendered))
    }

    /// Encodes one scored conversation.
    pub fn encode(&self, input: &ScoreInput) -> Result<Encoded, RewardError> {
        self.encode_with(input, None)
    }

    /// `encode`, with the conversation already serialised (see `render_with`).
    pub fn encode_with(&self, input: &ScoreInput, conversation: Option<&[Value]>) -> Result<Encoded, RewardError> {
        let tok_err = |e: tokenizers::Error| RewardError::Input(format!("tokenizer: {e}"));
        let encoding = match self.render_with(input, conversation)? {
            Some(text) => self.tokenizer.encode(text, false).map_err(tok_err)?,
            None => {
                let prompt =
                    input.conversation.iter().rev().find(|m| m.role == "user").map(|m| m.text()).unwrap_or_default();
                self.tokenizer.encode((prompt, input.response.text()), true).map_err(tok_err)?
            }
        };
        if encoding.get_ids().is_empty() {
            return Err(RewardError::Input("the scored text encodes to no tokens".into()));
        }
        Ok(Encoded {
            ids: encoding.get_ids().iter().map(|&i| i64::from(i)).collect(),
            type_ids: encoding.get_type_ids().iter().map(|&i| i64::from(i)).collect(),
        })
    }
}

/// A right-padded batch, row-major `[rows, width]`.
#[derive(Debug, PartialEq, Eq)]
pub struct Batch {
    pub rows: usize,
    pub width: usize,
    pub input_ids: Vec<i64>,
    pub attention_mask: Vec<i64>,
    pub token_type_ids: Vec<i64>,
    pub position_ids: Vec<i64>,
}

/// Pads `seqs` on the right with `pad_id` to the longest one.
pub fn pad(seqs: &[&Encoded], pad_id: u32) -> Batch {
    let rows = seqs.len();
    let width = seqs.iter().map(|s| s.ids.len()).max().unwrap_or(0);
    let mut batch = Batch {
        rows,
        width,
        input_ids: vec![i64::from(pad_id); rows * width],
        attention_mask: vec![0; rows * width],
        token_type_ids: vec![0; rows * width],
        // transformers' default when position_ids is not given: 0..width on every row.
        position_ids: (0..rows).flat_map(|_| 0..width as i64).collect(),
    };
    for (r, s) in seqs.iter().enumerate() {
        let at = r * width;
        batch.input_ids[at..at + s.ids.len()].copy_from_slice(&s.ids);
        batch.attention_mask[at..at + s.ids.len()].fill(1);
        batch.token_type_ids[at..at + s.type_ids.len()].copy_from_slice(&s.type_ids);
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_right_with_the_pad_id() {
        let seqs =
            [Encoded { ids: vec![5, 6, 7], type_ids: vec![0, 0, 1] }, Encoded { ids: vec![8], type_ids: vec![0] }];
        let b = pad(&[&seqs[0], &seqs[1]], 99);
        assert_eq!((b.rows, b.width), (2, 3));
        assert_eq!(b.input_ids, vec![5, 6, 7, 8, 99, 99]);
        assert_eq!(b.attention_mask, vec![1, 1, 1, 1, 0, 0]);
        assert_eq!(b.token_type_ids, vec![0, 0, 1, 0, 0, 0]);
        assert_eq!(b.position_ids, vec![0, 1, 2, 0, 1, 2]);
    }
}
