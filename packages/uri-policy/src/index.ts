export { nonPublicAddress, type PinnedAddress, resolvePublicAddress } from './addresses.js';
export { type ByteSourceOptions, policyByteSource } from './byte-source.js';
export { type PinnedRequest, type PinnedResponse, pinnedRequest } from './pinned-client.js';
export {
  checkHttpUri,
  checkSpecUris,
  checkTeamRoots,
  describeRefusal,
  policyForTeam,
  resolveFileUri,
  type UriPolicy,
} from './policy.js';
export { UriRefused } from './refusal.js';
