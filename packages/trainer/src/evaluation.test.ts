import { describe, expect, it } from 'vitest';
import {
  accuracy,
  agreement,
  expectedCalibrationError,
  meanCrossEntropy,
  meanKl,
  perClassAccuracy,
  topKAccuracy,
} from './evaluation.js';

// Three examples, two classes, as logits.
const logits = new Float32Array([Math.log(3), 0, 0, Math.log(9), 0, 0]);
// Softmax rows: [0.75, 0.25], [0.1, 0.9], [0.5, 0.5]; argmax 0, 1, 0.
const labels = new Int32Array([0, 0, 1]);

describe('evaluation figures', () => {
  it('accuracy counts argmax hits', () => {
    expect(accuracy(logits, labels, 2)).toBeCloseTo(1 / 3, 12);
  });

  it('agreement compares the two models’ argmax', () => {
    const other = new Float32Array([1, 0, 1, 0, 0, 1]); // argmax 0, 0, 1
    expect(agreement(logits, other, 3, 2)).toBeCloseTo(1 / 3, 12);
  });

  it('KL(teacher || student) matches a hand computation', () => {
    // Row 1 vs a uniform student: 0.130812 (see losses.test.ts); rows 2 and 3 identical: 0.
    const student = new Float32Array([0, 0, 0, Math.log(9), 0, 0]);
    expect(meanKl(logits, student, 3, 2)).toBeCloseTo(0.130812 / 3, 5);
  });

  it('cross-entropy is the mean negative log-probability of the labels', () => {
    // −ln 0.75 = 0.287682, −ln 0.1 = ln 10, −ln 0.5 = ln 2
    expect(meanCrossEntropy(logits, labels, 2)).toBeCloseTo((0.287682 + Math.LN10 + Math.LN2) / 3, 5);
  });

  it('calibration error bins confidence and compares it with accuracy', () => {
    // Confidences 0.75 (right), 0.9 (wrong), 0.5 (wrong), each in its own bin of 15:
    // ECE = (|1 − 0.75| + |0 − 0.9| + |0 − 0.5|) / 3 = 1.65 / 3
    expect(expectedCalibrationError(logits, labels, 2)).toBeCloseTo(1.65 / 3, 6);
  });

  it('top-k counts a label among the k highest scores', () => {
    // Three classes; rows rank the label 1st, 2nd and 3rd.
    const l3 = new Float32Array([3, 2, 1, 2, 3, 1, 3, 2, 1]);
    const y = new Int32Array([0, 0, 2]);
    expect(topKAccuracy(l3, y, 3, 1)).toBeCloseTo(1 / 3, 12);
    expect(topKAccuracy(l3, y, 3, 2)).toBeCloseTo(2 / 3, 12);
    expect(topKAccuracy(l3, y, 3, 3)).toBe(1);
  });

  it('per-class accuracy counts each class apart', () => {
    expect(perClassAccuracy(logits, labels, 2)).toEqual([
      { class: 0, examples: 2, accuracy: 0.5 },
      { class: 1, examples: 1, accuracy: 0 },
    ]);
  });
});
