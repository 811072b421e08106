/**
 * Why a URI may not be read or a request could not be made, in words that are safe to show the
 * user who named it: no resolved addresses, no bytes of what was read. Callers put it in a
 * RetortError with their own code and say which URI it was about.
 */
export class UriRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UriRefused';
  }
}
