//! Cutting source text into the chunks that are embedded, and the content hash
//! by which a refresh recognises a chunk it has embedded before.

use sha2::{Digest, Sha256};

/// Splits `text` into chunks of at most `size` characters, each repeating the
/// last `overlap` characters of the one before. A chunk ends at the last
/// whitespace of its window when there is one in the window's second half, so
/// words are not cut. Blank text has no chunks; long text is chunked whole,
/// never truncated.
pub fn chunk_text(text: &str, size: usize, overlap: usize) -> Vec<&str> {
    let size = size.max(1);
    let overlap = overlap.min(size - 1);
    let text = text.trim();
    if text.is_empty() {
        return Vec::new();
    }
    // Byte offset of every char, and the end.
    let bounds: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(text.len()))
        .collect();
    let chars = bounds.len() - 1;
    let mut chunks = Vec::new();
    let mut start = 0;
    loop {
        let mut end = (start + size).min(chars);
        if end < chars {
            let window = &text[bounds[start]..bounds[end]];
            if let Some(space) = window.rfind(char::is_whitespace) {
                let cut = window[..space].chars().count();
                if cut * 2 >= size && cut > overlap {
                    end = start + cut;
                }
            }
        }
        let chunk = text[bounds[start]..bounds[end]].trim();
        if !chunk.is_empty() {
            chunks.push(chunk);
        }
        if end == chars {
            return chunks;
        }
        start = end - overlap;
    }
}

/// A stable 64-bit hash of a chunk's text (the first 8 bytes of its SHA-256):
/// the same text always embeds to the same vector with one model.
pub fn content_hash(chunk: &str) -> u64 {
    let digest = Sha256::digest(chunk.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_one_chunk_and_blank_text_none() {
        assert_eq!(chunk_text("  Rust, SQL  ", 100, 10), vec!["Rust, SQL"]);
        assert!(chunk_text(" \n\t ", 100, 10).is_empty());
    }

    #[test]
    fn long_text_is_chunked_whole_with_overlap() {
        let words: Vec<String> = (0..2000).map(|i| format!("w{i}")).collect();
        let text = words.join(" ");
        let chunks = chunk_text(&text, 100, 20);
        assert!(chunks.len() > 90, "{}", chunks.len());
        assert!(chunks.iter().all(|c| c.chars().count() <= 100));
        // Every word is in some chunk: nothing is dropped.
        let joined = chunks.join(" ");
        assert!(words.iter().all(|w| joined.contains(w.as_str())));
        // Consecutive chunks share text.
        let tail: String = chunks[0]
            .chars()
            .rev()
            .take(10)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        assert!(
            chunks[1].contains(tail.trim()),
            "{:?} / {:?}",
            chunks[0],
            chunks[1]
        );
    }

    #[test]
    fn multibyte_text_is_cut_on_char_boundaries() {
        let text = "Zoë Hà Nội ".repeat(300);
        for chunk in chunk_text(&text, 37, 5) {
            assert!(chunk.chars().count() <= 37);
        }
    }

    #[test]
    fn text_without_spaces_is_cut_at_the_size() {
        let text = "x".repeat(250);
        let chunks = chunk_text(&text, 100, 10);
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[0].len(), 100);
    }

    #[test]
    fn content_hash_is_stable() {
        assert_eq!(content_hash("rust"), content_hash("rust"));
        assert_ne!(content_hash("rust"), content_hash("Rust"));
        // Pinned: a refresh compares hashes written by earlier builds.
        assert_eq!(content_hash(""), 0x141c_fc98_42c4_b0e3);
    }
}
