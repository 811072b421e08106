/**
 * How a run's code reads the bytes behind a URI. The trainer declares what it reads through this
 * and never opens a file or a socket; `@retort/uri-policy` implements it with the URI policy.
 */
export interface ByteSource {
  /** The most bytes any one read may return. */
  readonly maxBytes: number;
  /** The bytes behind `uri`, refused (`RETORT_DATA_UNREADABLE`) beyond `maxBytes` (and the source's own cap). */
  read(uri: string, options?: { maxBytes?: number }): Promise<Uint8Array>;
}
