/** The short chaos run on a private RabbitMQ node (see short-run.ts). */
import { describe } from 'vitest';
import { chaosTest } from './short-run.js';

describe('chaos on a private RabbitMQ node', () => chaosTest('rabbitmq'));
