/**
 * A message given as text is one character per byte (latin1): how the
 * parser reads datagrams and streams, so what the edge copies from a
 * request, UTF-8 in a display name included, goes out as it came in.
 * (Encoding it as UTF-8 sent those bytes twice encoded.)
 */
export function bytesOf(data: Buffer | string): Buffer {
  return typeof data === "string" ? Buffer.from(data, "latin1") : data;
}
