//! The simulated users: generated ids, or a CSV file of users (an `id` column plus any others,
//! e.g. a bearer token) whose columns the request templates use as `{user.NAME}`.
//!
//! Stored column by column in one byte arena, so a 200,000-user file costs its size and a few
//! offsets, and a template reads a cell without allocating.

use std::path::Path;

/// The users of a run, by index 0..len.
#[derive(Debug, Clone, Default)]
pub struct Users {
    /// Column names after `id`, in file order (`{user.NAME}`).
    pub columns: Vec<String>,
    /// User ids from the file; empty when ids are generated.
    ids: Vec<u64>,
    /// Every cell of every row, concatenated.
    cells: Vec<u8>,
    /// Where each cell starts in `cells` (row-major, `columns.len()` cells per row), plus the end.
    offsets: Vec<u32>,
    /// Generated ids: `offset + index`.
    offset: u64,
    /// Generated ids: how many.
    count: u64,
    /// The file, for messages.
    pub file: Option<String>,
}

impl Users {
    /// `count` users with ids `offset`, `offset + 1`, ….
    pub fn generated(count: u64, offset: u64) -> Users {
        Users {
            offset,
            count,
            ..Users::default()
        }
    }

    /// Reads a CSV of users: a header row whose first column is `id`, then one row per user
    /// with a whole-number id. Errors say the line.
    pub fn from_csv(path: &Path) -> Result<Users, String> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_path(path)
            .map_err(|e| format!("cannot read the users file {}: {e}", path.display()))?;
        let header = reader
            .headers()
            .map_err(|e| format!("{}: {e}", path.display()))?
            .clone();
        if header.get(0).map(str::trim) != Some("id") {
            // Its cells are not quoted: a file without a header row would show a user's token.
            return Err(format!(
                "{}: the first line must name the columns, the first one `id` (e.g. `id,token`); its first cell is not `id`",
                path.display(),
            ));
        }
        let columns: Vec<String> = header
            .iter()
            .skip(1)
            .map(|c| c.trim().to_string())
            .collect();
        let mut users = Users {
            columns,
            file: Some(path.display().to_string()),
            ..Users::default()
        };
        users.offsets.push(0);
        let mut seen = std::collections::HashSet::new();
        for (n, record) in reader.records().enumerate() {
            let line = n + 2;
            let record = record.map_err(|e| format!("{} line {line}: {e}", path.display()))?;
            let id: u64 = record.get(0).unwrap_or("").trim().parse().map_err(|_| {
                format!(
                    "{} line {line}: the `id` cell is not a whole number",
                    path.display(),
                )
            })?;
            if !seen.insert(id) {
                return Err(format!(
                    "{} line {line}: user {id} appears twice",
                    path.display()
                ));
            }
            if record.len() != users.columns.len() + 1 {
                return Err(format!(
                    "{} line {line}: {} cells for {} columns",
                    path.display(),
                    record.len(),
                    users.columns.len() + 1
                ));
            }
            users.ids.push(id);
            for cell in record.iter().skip(1) {
                users.cells.extend_from_slice(cell.as_bytes());
                users.offsets.push(users.cells.len() as u32);
            }
        }
        if users.ids.is_empty() {
            return Err(format!("{}: the users file has no users", path.display()));
        }
        Ok(users)
    }

    /// How many users there are.
    pub fn len(&self) -> u64 {
        if self.ids.is_empty() {
            self.count
        } else {
            self.ids.len() as u64
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps the first `count` users (a scenario may use fewer than its file holds).
    pub fn truncate(&mut self, count: u64) {
        if self.ids.is_empty() {
            self.count = count;
        } else if (count as usize) < self.ids.len() {
            self.ids.truncate(count as usize);
            let cells = count as usize * self.columns.len();
            let end = self.offsets[cells] as usize;
            self.offsets.truncate(cells + 1);
            self.cells.truncate(end);
        }
    }

    /// The id of user number `index`.
    pub fn id(&self, index: u64) -> u64 {
        if self.ids.is_empty() {
            self.offset + index
        } else {
            self.ids[index as usize]
        }
    }

    /// Column `col` of user number `index` (empty for generated users).
    pub fn cell(&self, index: u64, col: usize) -> &[u8] {
        if self.ids.is_empty() {
            return &[];
        }
        let i = index as usize * self.columns.len() + col;
        &self.cells[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    /// The column called `name`.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// Adds columns computed from each user's id (`[users.derive]`: e.g. a bearer token the
    /// system derives the same way); generated users become a table. `derive` writes the
    /// value of column `c` for user `id`.
    pub fn derive(&mut self, names: &[String], derive: impl Fn(usize, u64, &mut Vec<u8>)) {
        let n = self.len();
        let old_cols = self.columns.len();
        let mut cells = Vec::with_capacity(self.cells.len() + n as usize * names.len() * 24);
        let mut offsets = Vec::with_capacity(n as usize * (old_cols + names.len()) + 1);
        offsets.push(0u32);
        let mut ids = Vec::with_capacity(n as usize);
        for i in 0..n {
            let id = self.id(i);
            ids.push(id);
            for c in 0..old_cols {
                cells.extend_from_slice(self.cell(i, c));
                offsets.push(cells.len() as u32);
            }
            for c in 0..names.len() {
                derive(c, id, &mut cells);
                offsets.push(cells.len() as u32);
            }
        }
        self.columns.extend(names.iter().cloned());
        (self.ids, self.cells, self.offsets) = (ids, cells, offsets);
        // The table is no longer the file's.
        self.file = None;
    }

    /// Writes the users as a CSV (`id` and every column), for a process the harness starts
    /// that reads the same users (`{users.csv}`).
    pub fn write_csv(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write as _;
        // Tokens and passwords may be in it: 0600.
        let mut w = std::io::BufWriter::new(crate::leftovers::private_file(path)?);
        write!(w, "id")?;
        for c in &self.columns {
            write!(w, ",{c}")?;
        }
        writeln!(w)?;
        for i in 0..self.len() {
            write!(w, "{}", self.id(i))?;
            for c in 0..self.columns.len() {
                w.write_all(b",")?;
                w.write_all(self.cell(i, c))?;
            }
            writeln!(w)?;
        }
        w.flush()
    }
}

/// `hex` hex digits of the SHA-256 of `text` (a derived column's value).
pub fn sha256_hex(text: &[u8], hex: usize, out: &mut Vec<u8>) {
    use sha2::Digest as _;
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digest = sha2::Sha256::digest(text);
    for b in digest.iter().flat_map(|b| [b >> 4, b & 15]).take(hex) {
        out.push(DIGITS[b as usize]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_columns_and_the_csv_they_make() {
        let mut users = Users::generated(3, 1);
        users.derive(&["token".to_string()], |_, id, out| {
            sha256_hex(format!("seckill-user-{id}").as_bytes(), 24, out)
        });
        // examples/seckill/users.csv derives its tokens the same way.
        assert_eq!(users.cell(0, 0), b"3fa423a52debf3203bc0e335");
        assert_eq!(users.id(2), 3);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.csv");
        users.write_csv(&path).unwrap();
        let back = Users::from_csv(&path).unwrap();
        assert_eq!(back.columns, vec!["token".to_string()]);
        assert_eq!(back.cell(1, 0), b"379362a8fd2940ab457f0ff4");
    }

    #[test]
    fn a_users_file_by_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.csv");
        std::fs::write(&path, "id,token,tier\n7,abc,gold\n9,def,\n").unwrap();
        let mut u = Users::from_csv(&path).unwrap();
        assert_eq!(
            (u.len(), u.columns.clone()),
            (2, vec!["token".to_string(), "tier".to_string()])
        );
        assert_eq!(
            (u.id(1), u.cell(1, 0), u.cell(0, 1), u.cell(1, 1)),
            (9, &b"def"[..], &b"gold"[..], &b""[..])
        );
        u.truncate(1);
        assert_eq!((u.len(), u.cell(0, 0)), (1, &b"abc"[..]));
        assert_eq!(Users::generated(3, 100).id(2), 102);
    }

    #[test]
    fn a_bad_users_file_says_where() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.csv");
        std::fs::write(&path, "user,token\n1,a\n").unwrap();
        assert!(
            Users::from_csv(&path)
                .unwrap_err()
                .contains("the first one `id`")
        );
        // Errors name columns and lines, never a cell: no token of a header-less file shows.
        std::fs::write(&path, "tok-9f8e7d,1\n").unwrap();
        let err = Users::from_csv(&path).unwrap_err();
        assert!(err.contains("first line must name the columns") && !err.contains("tok-9f8e7d"));
        std::fs::write(&path, "id,token\n1,a\ntok-9f8e7d,b\n").unwrap();
        let err = Users::from_csv(&path).unwrap_err();
        assert!(
            err.contains("line 3") && !err.contains("tok-9f8e7d"),
            "{err}"
        );
        std::fs::write(&path, "id,token\n1,a\n1,b\n").unwrap();
        assert!(Users::from_csv(&path).unwrap_err().contains("twice"));
    }
}
