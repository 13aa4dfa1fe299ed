import type { Node, NodeAPI, NodeDef } from 'node-red';
import { isRolloutCommand, rolloutEventMessage, runRolloutCommand, ROLLOUT_COMMANDS, type RolloutEvent } from '../server';
import { handleInput, serverOf } from './server-ref';
import { StatusLabel } from './status-label';

interface RolloutDef extends NodeDef {
  server: string;
}

export default function init(RED: NodeAPI): void {
  function OtaRollout(this: Node, def: RolloutDef): void {
    RED.nodes.createNode(this, def);
    const server = serverOf(RED, this, def.server);
    if (!server) return;
    const label = new StatusLabel(this, RED._);
    label.show('grey', 'ring', 'ota-rollout.status.ready');
    const show = (r: { name?: unknown; state?: unknown; currentWave?: unknown; waves?: unknown }): void =>
      label.show(r.state === 'ABORTED' ? 'red' : r.state === 'RUNNING' ? 'blue' : 'green', 'dot', 'ota-rollout.status.state', {
        name: String(r.name),
        state: String(r.state),
        wave: Math.min(Number(r.currentWave) + 1, Array.isArray(r.waves) ? r.waves.length : 0),
        waves: Array.isArray(r.waves) ? r.waves.length : 0,
      });

    // Wave and state events of the flow's tenant, from the instance that drives the rollout.
    let unhear: (() => void) | null = null;
    Promise.all([server.engine, server.tenantId()]).then(
      ([engine, tenantId]) => {
        const hear = (ev: RolloutEvent): void => {
          if (ev.rollout.tenantId !== tenantId) return;
          rolloutEventMessage(engine.rollouts, ev).then(
            (msg) => {
              this.send([null, msg]);
              if (msg.topic === 'state') show(msg.payload);
            },
            (err: Error) => this.warn(err.message),
          );
        };
        engine.rollouts.on('rollout', hear);
        unhear = () => engine.rollouts.off('rollout', hear);
      },
      () => label.show('red', 'ring', 'ota-rollout.status.engine-error'),
    );

    this.on(
      'input',
      handleInput(
        this,
        async (msg, send) => {
          if (!isRolloutCommand(msg.topic)) throw new Error(`msg.topic must be one of ${ROLLOUT_COMMANDS.join(', ')}`);
          const engine = await server.engine;
          const rollout = await runRolloutCommand(engine.rollouts, await server.tenantId(), msg.topic, msg.payload);
          send([{ ...msg, payload: rollout }, null]);
          show(rollout);
        },
        label,
      ),
    );
    this.on('close', () => {
      unhear?.();
      label.close();
    });
  }
  RED.nodes.registerType('ota-rollout', OtaRollout);
}
