//! The sidecar: a frozen index as one binary object next to its shard's data.
//!
//! Layout (little-endian): magic `LHVHNSW\n`, format version (u32), metric (u8) and
//! three zero bytes, dims, M, ef_construction (u32 each), node count (u64), entry
//! point and upper-layer count (u32 each); then doc ids (u64 × n), vectors
//! (f32 × n·dims), layer 0 as offsets (u32 × n+1), link count (u64) and links
//! (u32), each upper layer as node count (u64), nodes, offsets, link count, links;
//! last a CRC-32 of everything before it. Loading reads the arrays back as they
//! are: nothing is rebuilt.

use bytes::Bytes;
use lakehouse_common::{Bucket, ObjectRef};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use tracing::{info, instrument};

use crate::error::{Error, Result};
use crate::frozen::{Csr, FrozenHnsw, IndexParams, Metric, Parts, UpperLayer};

const MAGIC: &[u8; 8] = b"LHVHNSW\n";
/// The format this build writes and reads; bump on any layout change.
pub const FORMAT_VERSION: u32 = 1;
const HEADER_BYTES: usize = 8 + 4 + 4 + 4 * 3 + 8 + 4 * 2;
const CHECKSUM_BYTES: usize = 4;

/// Serialises `index` into sidecar bytes.
pub fn encode(index: &FrozenHnsw) -> Vec<u8> {
    let parts = index.parts();
    let csr_bytes = |c: &Csr| 8 + 4 * (c.offsets.len() + c.neighbours.len());
    let size = HEADER_BYTES
        + 8 * parts.doc_ids.len()
        + 4 * parts.vectors.len()
        + csr_bytes(&parts.base)
        + parts
            .upper
            .iter()
            .map(|l| 8 + 4 * l.nodes.len() + csr_bytes(&l.links))
            .sum::<usize>()
        + CHECKSUM_BYTES;
    let mut out = Vec::with_capacity(size);
    let params = parts.params;
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&[params.metric.code(), 0, 0, 0]);
    for value in [params.dims, params.m, params.ef_construction] {
        // Builder and reader keep these far below u32::MAX.
        out.extend_from_slice(&(value as u32).to_le_bytes());
    }
    out.extend_from_slice(&(parts.doc_ids.len() as u64).to_le_bytes());
    out.extend_from_slice(&parts.entry_point.to_le_bytes());
    out.extend_from_slice(&(parts.upper.len() as u32).to_le_bytes());
    parts
        .doc_ids
        .iter()
        .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
    parts
        .vectors
        .iter()
        .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
    put_csr(&mut out, &parts.base);
    for layer in &parts.upper {
        out.extend_from_slice(&(layer.nodes.len() as u64).to_le_bytes());
        put_u32s(&mut out, &layer.nodes);
        put_csr(&mut out, &layer.links);
    }
    let checksum = crc32fast::hash(&out);
    out.extend_from_slice(&checksum.to_le_bytes());
    out
}

fn put_u32s(out: &mut Vec<u8>, values: &[u32]) {
    values
        .iter()
        .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
}

fn put_csr(out: &mut Vec<u8>, csr: &Csr) {
    put_u32s(out, &csr.offsets);
    out.extend_from_slice(&(csr.neighbours.len() as u64).to_le_bytes());
    put_u32s(out, &csr.neighbours);
}

/// Reads sidecar bytes back; `location` names the object in errors.
pub fn decode(bytes: &[u8], location: &str) -> Result<FrozenHnsw> {
    let corrupt = |reason: String| Error::CorruptSidecar {
        location: location.to_string(),
        reason,
    };
    if bytes.len() < HEADER_BYTES + CHECKSUM_BYTES || &bytes[..MAGIC.len()] != MAGIC {
        return Err(corrupt("no HNSW sidecar header".to_string()));
    }
    let mut reader = Reader {
        bytes: &bytes[MAGIC.len()..bytes.len() - CHECKSUM_BYTES],
    };
    let version = reader.u32().map_err(corrupt)?;
    if version != FORMAT_VERSION {
        return Err(Error::UnsupportedVersion {
            location: location.to_string(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let (body, trailer) = bytes.split_at(bytes.len() - CHECKSUM_BYTES);
    let stored = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    if crc32fast::hash(body) != stored {
        return Err(corrupt(
            "checksum mismatch: the object is damaged or truncated".to_string(),
        ));
    }
    let parts = read_parts(&mut reader).map_err(corrupt)?;
    if !reader.bytes.is_empty() {
        return Err(corrupt(format!(
            "{} bytes after the last layer",
            reader.bytes.len()
        )));
    }
    FrozenHnsw::from_parts(parts).map_err(corrupt)
}

fn read_parts(reader: &mut Reader<'_>) -> std::result::Result<Parts, String> {
    let metric_code = reader.take(4)?[0];
    let metric =
        Metric::from_code(metric_code).ok_or(format!("unknown metric code {metric_code}"))?;
    let dims = reader.u32()? as usize;
    let m = reader.u32()? as usize;
    let ef_construction = reader.u32()? as usize;
    let n = reader.len()?;
    let entry_point = reader.u32()?;
    let upper_layers = reader.u32()? as usize;
    let doc_ids = reader.array(n, u64::from_le_bytes)?;
    let values = n.checked_mul(dims).ok_or("vector block size overflows")?;
    let vectors = reader.array(values, f32::from_le_bytes)?;
    let base = reader.csr(n)?;
    let mut upper = Vec::new();
    for _ in 0..upper_layers {
        let nodes_len = reader.len()?;
        let nodes = reader.array(nodes_len, u32::from_le_bytes)?;
        upper.push(UpperLayer {
            links: reader.csr(nodes_len)?,
            nodes,
        });
    }
    Ok(Parts {
        params: IndexParams {
            dims,
            metric,
            m,
            ef_construction,
        },
        doc_ids,
        vectors,
        entry_point,
        base,
        upper,
    })
}

/// A cursor that fails with a reason instead of panicking on short input.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> std::result::Result<&'a [u8], String> {
        if len > self.bytes.len() {
            return Err(format!(
                "truncated: {len} bytes needed, {} left",
                self.bytes.len()
            ));
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(head)
    }

    fn array<T, const W: usize>(
        &mut self,
        count: usize,
        from_le: fn([u8; W]) -> T,
    ) -> std::result::Result<Vec<T>, String> {
        let bytes = self.take(count.checked_mul(W).ok_or("array size overflows")?)?;
        Ok(bytes
            .chunks_exact(W)
            .map(|chunk| {
                let mut word = [0u8; W];
                word.copy_from_slice(chunk);
                from_le(word)
            })
            .collect())
    }

    fn u32(&mut self) -> std::result::Result<u32, String> {
        Ok(self.array(1, u32::from_le_bytes)?[0])
    }

    fn len(&mut self) -> std::result::Result<usize, String> {
        let value = self.array(1, u64::from_le_bytes)?[0];
        usize::try_from(value).map_err(|_| format!("length {value} does not fit in memory"))
    }

    fn csr(&mut self, nodes: usize) -> std::result::Result<Csr, String> {
        let offsets = self.array(
            nodes.checked_add(1).ok_or("node count overflows")?,
            u32::from_le_bytes,
        )?;
        let links = self.len()?;
        let neighbours = self.array(links, u32::from_le_bytes)?;
        Ok(Csr {
            offsets,
            neighbours,
        })
    }
}

fn object_path(bucket: &Bucket, location: &ObjectRef) -> Result<Path> {
    if bucket.name() != location.bucket {
        return Err(Error::WrongBucket {
            location: describe(location),
            wanted: location.bucket.clone(),
            given: bucket.name().to_string(),
        });
    }
    Ok(Path::from(location.key.as_str()))
}

fn describe(location: &ObjectRef) -> String {
    format!("{}:{}", location.bucket, location.key)
}

/// Writes `index` as a sidecar object. Encoding is a memory copy plus a CRC
/// (well under a second for 100K × 768), so it runs inline.
#[instrument(skip_all, fields(bucket = %location.bucket, key = %location.key, vectors = index.len()))]
pub async fn write_sidecar(
    bucket: &Bucket,
    location: &ObjectRef,
    index: &FrozenHnsw,
) -> Result<()> {
    let path = object_path(bucket, location)?;
    let bytes = encode(index);
    let size = bytes.len();
    bucket
        .store()
        .put(&path, PutPayload::from(Bytes::from(bytes)))
        .await
        .map_err(|source| Error::Storage {
            location: describe(location),
            source,
        })?;
    info!(bytes = size, "wrote HNSW sidecar");
    Ok(())
}

/// Loads a sidecar object written by [`write_sidecar`].
#[instrument(skip_all, fields(bucket = %location.bucket, key = %location.key))]
pub async fn read_sidecar(bucket: &Bucket, location: &ObjectRef) -> Result<FrozenHnsw> {
    let path = object_path(bucket, location)?;
    let storage_error = |source| Error::Storage {
        location: describe(location),
        source,
    };
    let bytes = bucket
        .store()
        .get(&path)
        .await
        .map_err(storage_error)?
        .bytes()
        .await
        .map_err(storage_error)?;
    let index = decode(&bytes, &describe(location))?;
    info!(
        bytes = bytes.len(),
        vectors = index.len(),
        "loaded HNSW sidecar"
    );
    Ok(index)
}
