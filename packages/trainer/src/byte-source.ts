/**
 * How the trainer reads the bytes behind a URI. The trainer never opens a file or a socket: the
 * worker and the CLI hand it a source that applies the URI policy (`@retort/uri-policy`).
 */
export interface ByteSource {
  /** The most bytes any one read may return. */
  readonly maxBytes: number;
  /** The bytes behind `uri`, refused (`RETORT_DATA_UNREADABLE`) beyond `maxBytes` (and the source's own cap). */
  read(uri: string, options?: { maxBytes?: number }): Promise<Uint8Array>;
}
