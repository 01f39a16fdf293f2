// The DCF panel: a left-sidebar tab listing every gateway's functions, a status-bar item, and "Deploy DCF
// function" on function folders and config.yaml files in the file browser.
import { ILabShell, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { Notification } from '@jupyterlab/apputils';
import { IFileBrowserFactory } from '@jupyterlab/filebrowser';
import { IStatusBar } from '@jupyterlab/statusbar';
import { LabIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { post } from './api';
import { DcfPanel } from './panel';

const ICON = new LabIcon({
  name: 'dcf-jupyter:icon',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><path class="jp-icon3" fill="#616161" ' +
    'd="M13 2 4 14h7l-1 8 9-12h-7z"/></svg>'
});
const DEPLOY = 'dcf:deploy';

function selectedPath(factory: IFileBrowserFactory): { path: string; isFunction: boolean } | null {
  const browser = factory.tracker.currentWidget;
  const item = browser?.selectedItems().next();
  if (!item || item.done || !item.value) {
    return null;
  }
  const model = item.value;
  const isFunction = model.type === 'directory' || model.name === 'config.yaml' || model.name === 'config.yml';
  return { path: model.path, isFunction };
}

function statusItem(panel: DcfPanel, shell: ILabShell | null, app: JupyterFrontEnd): Widget {
  const item = new Widget();
  item.addClass('dcf-status-item');
  item.node.title = 'DCF: open the functions panel';
  const show = () => {
    const gateways = panel.gateways;
    const shared = gateways.find(g => g.id === 'shared');
    const count = gateways.reduce((n, g) => n + g.functions.length, 0);
    const state = shared?.healthy ? 'up' : 'down';
    item.node.dataset.state = state;
    item.node.dataset.functions = String(count);
    item.node.textContent = `DCF ${shared?.healthy ? '●' : '○'} ${count} function${count === 1 ? '' : 's'}`;
  };
  panel.changed.connect(show);
  item.node.onclick = () => app.shell.activateById(panel.id);
  show();
  return item;
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'dcf-jupyter:panel',
  description: 'The DCF panel: functions, status, logs, scale, delete and deploys of every gateway of yours',
  autoStart: true,
  requires: [IFileBrowserFactory],
  optional: [ILabShell, IStatusBar],
  activate: (
    app: JupyterFrontEnd,
    factory: IFileBrowserFactory,
    shell: ILabShell | null,
    statusBar: IStatusBar | null
  ) => {
    const panel = new DcfPanel();
    panel.title.icon = ICON;
    app.shell.add(panel, 'left', { rank: 600 });
    if (statusBar) {
      statusBar.registerStatusItem('dcf-jupyter:status', {
        item: statusItem(panel, shell, app),
        align: 'left',
        rank: 50
      });
    }
    app.commands.addCommand(DEPLOY, {
      label: 'Deploy DCF function',
      caption: 'Deploy this function folder (or its config.yaml) to the gateway chosen in the DCF panel',
      icon: ICON,
      isVisible: () => selectedPath(factory)?.isFunction ?? false,
      execute: async () => {
        const selected = selectedPath(factory);
        const target = panel.target;
        if (!selected || !target) {
          return;
        }
        const done = post<{ message: string }>(`gateways/${encodeURIComponent(target.id)}/deploy`, {
          path: selected.path
        });
        Notification.promise(done, {
          pending: { message: `Deploying ${selected.path} to ${target.label}…`, options: { autoClose: false } },
          success: { message: (result: any) => result.message, options: { autoClose: 5000 } },
          error: { message: (error: any) => `Deploy failed: ${error.message}`, options: { autoClose: false } }
        });
        try {
          await done;
        } finally {
          await panel.refresh();
        }
      }
    });
    app.contextMenu.addItem({ command: DEPLOY, selector: '.jp-DirListing-item[data-isdir]', rank: 3 });
  }
};

export default plugin;
