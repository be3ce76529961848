//! The plan cache behind [`crate::einsum`]: a thread-safe LRU keyed by (equation,
//! operand shapes, dtypes, target). A hit costs one hash of the key and a lock, so
//! repeated small einsums pay microseconds, not a compile.

use crate::api::Expression;
use crate::Error;
use einc_frontend::ein::ast::DType;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Plans kept; the least recently used is dropped beyond this.
pub const CAPACITY: usize = 256;

/// Cache key. Built incrementally so a lookup allocates one small buffer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    equation: String,
    /// Per operand: rank, dims..., dtype code. Target is implicit (CPU) for now.
    dims: Vec<usize>,
}

impl Key {
    pub fn new(equation: &str) -> Key {
        Key {
            equation: equation.to_string(),
            dims: Vec::with_capacity(16),
        }
    }

    pub fn push_operand(&mut self, shape: &[usize], dtype: DType) {
        self.dims.push(shape.len());
        self.dims.extend_from_slice(shape);
        self.dims.push(dtype as usize);
    }

    fn operands(&self) -> (Vec<Vec<usize>>, Vec<DType>) {
        let (mut shapes, mut dtypes) = (Vec::new(), Vec::new());
        let mut i = 0;
        while i < self.dims.len() {
            let r = self.dims[i];
            shapes.push(self.dims[i + 1..i + 1 + r].to_vec());
            let code = self.dims[i + 1 + r];
            dtypes.push(DType::ALL.get(code).copied().unwrap_or(DType::F64));
            i += r + 2;
        }
        (shapes, dtypes)
    }
}

struct Lru {
    map: HashMap<Key, (Arc<Expression>, u64)>,
    clock: u64,
}

fn lru() -> &'static Mutex<Lru> {
    static CACHE: OnceLock<Mutex<Lru>> = OnceLock::new();
    CACHE.get_or_init(|| {
        Mutex::new(Lru {
            map: HashMap::new(),
            clock: 0,
        })
    })
}

/// The cached expression for `key`, compiling it on a miss. Errors are not cached.
pub fn get_or_compile(
    key: Key,
    compile: impl FnOnce(&[Vec<usize>], &[DType]) -> Result<Expression, Error>,
) -> Result<Arc<Expression>, Error> {
    if let Ok(mut c) = lru().lock() {
        c.clock += 1;
        let now = c.clock;
        if let Some((e, used)) = c.map.get_mut(&key) {
            *used = now;
            return Ok(e.clone());
        }
    }
    // Compile outside the lock: other threads keep hitting the cache meanwhile.
    let (shapes, dtypes) = key.operands();
    let expr = Arc::new(compile(&shapes, &dtypes)?);
    if let Ok(mut c) = lru().lock() {
        if c.map.len() >= CAPACITY {
            if let Some(oldest) = c
                .map
                .iter()
                .min_by_key(|(_, (_, u))| *u)
                .map(|(k, _)| k.clone())
            {
                c.map.remove(&oldest);
            }
        }
        let now = c.clock;
        c.map.insert(key, (expr.clone(), now));
    }
    Ok(expr)
}

/// Number of cached plans (for tests and diagnostics).
pub fn len() -> usize {
    lru().lock().map(|c| c.map.len()).unwrap_or(0)
}

/// Drop every cached plan.
pub fn clear() {
    if let Ok(mut c) = lru().lock() {
        c.map.clear();
    }
}
