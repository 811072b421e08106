import { RetortError } from '@retort/spec';
import { describe, expect, it } from 'vitest';
import { describeFailure } from './failure.js';

describe('how a training error becomes a run error', () => {
  it('keeps a Retort error as it is, with its retry advice', () => {
    expect(describeFailure(new RetortError('RETORT_DATA_INVALID', 'bad labels'))).toEqual({
      error: { code: 'RETORT_DATA_INVALID', message: 'bad labels' },
      retryable: false,
    });
  });

  it('calls running out of memory what it is, with advice, and does not retry it', () => {
    for (const e of [
      new RangeError('Array buffer allocation failed'),
      new Error('Cannot enlarge memory arrays'),
      Object.assign(new Error('memory access out of bounds'), { name: 'RuntimeError' }),
    ]) {
      const f = describeFailure(e);
      expect(f.retryable).toBe(false);
      expect(f.error.code).toBe('RETORT_OUT_OF_MEMORY');
      expect(f.error.message).toMatch(/lower training.batchSize/);
    }
  });

  it('fails any other error at once: the same spec and data would raise it again', () => {
    expect(describeFailure(new Error('Error when checking input: expected 784'))).toEqual({
      error: {
        code: 'RETORT_TRAINING_FAILED',
        message: 'training failed: Error when checking input: expected 784',
      },
      retryable: false,
    });
  });
});
