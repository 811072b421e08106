export * from './byte-source.js';
export * from './errors.js';
export * from './resources.js';
export * from './run-spec.js';
export * from './schema/index.js';
export * from './spec-uris.js';
export * from './validate.js';
export * from './verdict.js';
