export { type AppDeps, buildApp } from './app.js';
export { type ApiConfig, configFrom, loadEnv } from './env.js';
