// An L2 book kept from `book.<instrument>` frames, verified like the gateway's mirror (gateway/l2.py):
// each update must continue from the previous frame's seq, and the CRC32 of the top 10 asks ascending
// then top 10 bids descending, "price""size" in integer units (decimal point removed), must match.

const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC32 (zlib's) of an ASCII string, as an unsigned integer. */
export function crc32(text) {
  let c = 0xffffffff;
  for (let i = 0; i < text.length; i++) c = TABLE[(c ^ text.charCodeAt(i)) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** A fixed-scale decimal string as integer units (BigInt): "187.50" -> 18750n, "0.0100" -> 100n. */
export function units(text) {
  return BigInt(String(text).replace(".", ""));
}

export class L2Book {
  constructor() {
    this.reset();
  }

  reset() {
    this.bids = new Map();
    this.asks = new Map();
    this.seq = null;
  }

  /** Replace everything with a snapshot frame; returns "ok" or "checksum". */
  snapshot(frame) {
    this.bids = new Map(frame.bids.map(([p, q]) => [p, q]));
    this.asks = new Map(frame.asks.map(([p, q]) => [p, q]));
    this.seq = frame.seq;
    return this.checksum() === frame.checksum ? "ok" : "checksum";
  }

  /** Apply an update frame; returns "ok", "gap" (prev_seq is not our seq) or "checksum" (mismatch). */
  update(frame) {
    if (this.seq === null || frame.prev_seq !== this.seq) return "gap";
    for (const [side, levels] of [[this.bids, frame.bids], [this.asks, frame.asks]]) {
      for (const [price, qty] of levels) {
        if (units(qty) === 0n) side.delete(price);
        else side.set(price, qty);
      }
    }
    this.seq = frame.seq;
    return this.checksum() === frame.checksum ? "ok" : "checksum";
  }

  /** [bids best first, asks best first], each [[price, qty], ...], at most `n` levels. */
  levels(n = Infinity) {
    const order = (m, desc) => [...m.entries()].sort((a, b) => {
      const d = units(a[0]) - units(b[0]);
      return (desc ? -d : d) > 0n ? 1 : -1;
    }).slice(0, n);
    return [order(this.bids, true), order(this.asks, false)];
  }

  checksum() {
    const [bids, asks] = this.levels(10);
    const text = [...asks, ...bids].map(([p, q]) => `${units(p)}${units(q)}`).join("");
    return crc32(text);
  }
}
