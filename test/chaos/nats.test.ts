/** The short chaos run on a private nats-server (see short-run.ts). */
import { describe } from 'vitest';
import { chaosTest } from './short-run.js';

describe('chaos on a private nats-server', () => chaosTest('nats'));
