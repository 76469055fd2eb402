// A minimal Parquet writer for tests (string columns only: one row group, PLAIN, uncompressed, REQUIRED),
// so the loader is tested on real Parquet bytes without a writer dependency.

class Compact {
  bytes: number[] = [];
  private last: number[] = [0];
  varint(n: bigint | number): void {
    let v = BigInt(n);
    while (v >= 0x80n) {
      this.bytes.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    this.bytes.push(Number(v));
  }
  zigzag(n: number): void {
    const v = BigInt(n);
    this.varint(v >= 0n ? v << 1n : (-v << 1n) - 1n);
  }
  field(id: number, type: number): void {
    const delta = id - this.last[this.last.length - 1]!;
    if (delta > 0 && delta <= 15) this.bytes.push((delta << 4) | type);
    else {
      this.bytes.push(type);
      this.zigzag(id);
    }
    this.last[this.last.length - 1] = id;
  }
  i32(id: number, v: number): void {
    this.field(id, 5);
    this.zigzag(v);
  }
  i64(id: number, v: number): void {
    this.field(id, 6);
    this.zigzag(v);
  }
  binary(id: number, s: string): void {
    this.field(id, 8);
    const b = Buffer.from(s, "utf8");
    this.varint(b.length);
    this.bytes.push(...b);
  }
  struct(id: number | null, body: () => void): void {
    if (id !== null) this.field(id, 12);
    this.last.push(0);
    body();
    this.bytes.push(0);
    this.last.pop();
  }
  list(id: number, elemType: number, items: (() => void)[]): void {
    this.field(id, 9);
    if (items.length < 15) this.bytes.push((items.length << 4) | elemType);
    else {
      this.bytes.push(0xf0 | elemType);
      this.varint(items.length);
    }
    for (const it of items) it();
  }
}

/** Parquet bytes for rows whose columns are all strings. */
export function writeParquet(rows: Record<string, string>[]): Buffer {
  const names = Object.keys(rows[0]!);
  const chunks: Buffer[] = [Buffer.from("PAR1")];
  let offset = 4;
  const columns: { name: string; offset: number; size: number }[] = [];
  for (const name of names) {
    const values = rows.map((r) => Buffer.from(r[name]!, "utf8"));
    const data = Buffer.concat(values.flatMap((v) => [Buffer.from(new Uint32Array([v.length]).buffer), v]));
    const h = new Compact();
    h.struct(null, () => {
      h.i32(1, 0); // DATA_PAGE
      h.i32(2, data.length);
      h.i32(3, data.length);
      h.struct(5, () => {
        h.i32(1, rows.length);
        h.i32(2, 0); // PLAIN
        h.i32(3, 3); // RLE
        h.i32(4, 3);
      });
    });
    const page = Buffer.concat([Buffer.from(h.bytes), data]);
    columns.push({ name, offset, size: page.length });
    chunks.push(page);
    offset += page.length;
  }
  const m = new Compact();
  m.struct(null, () => {
    m.i32(1, 1);
    m.list(2, 12, [
      () =>
        m.struct(null, () => {
          m.binary(4, "schema");
          m.i32(5, names.length);
        }),
      ...names.map(
        (name) => () =>
          m.struct(null, () => {
            m.i32(1, 6); // BYTE_ARRAY
            m.i32(3, 0); // REQUIRED
            m.binary(4, name);
            m.i32(6, 0); // UTF8
          }),
      ),
    ]);
    m.i64(3, rows.length);
    m.list(4, 12, [
      () =>
        m.struct(null, () => {
          m.list(
            1,
            12,
            columns.map(
              (c) => () =>
                m.struct(null, () => {
                  m.i64(2, c.offset);
                  m.struct(3, () => {
                    m.i32(1, 6);
                    m.list(2, 5, [() => m.zigzag(0)]);
                    m.list(3, 8, [
                      () => {
                        const b = Buffer.from(c.name, "utf8");
                        m.varint(b.length);
                        m.bytes.push(...b);
                      },
                    ]);
                    m.i32(4, 0); // UNCOMPRESSED
                    m.i64(5, rows.length);
                    m.i64(6, c.size);
                    m.i64(7, c.size);
                    m.i64(9, c.offset);
                  });
                }),
            ),
          );
          m.i64(
            2,
            columns.reduce((n, c) => n + c.size, 0),
          );
          m.i64(3, rows.length);
        }),
    ]);
  });
  const footer = Buffer.from(m.bytes);
  chunks.push(footer, Buffer.from(new Uint32Array([footer.length]).buffer), Buffer.from("PAR1"));
  return Buffer.concat(chunks);
}
