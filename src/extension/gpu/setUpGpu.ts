// The "PruneKit: Set Up GPU" command: says what a CUDA run needs, offers to fetch onnxruntime's CUDA provider
// with its own installer, and without a network says exactly what to do by hand.

import * as vscode from 'vscode';
import { gpuProviderStatus, installCudaProvider, offlineInstructions } from './gpuSetup';

const NEEDS = 'Running on an NVIDIA GPU needs the NVIDIA driver, CUDA 12 and cuDNN 9 installed on this machine, and onnxruntime\'s CUDA provider (about 400 MB, downloaded from NuGet).';

export async function setUpGpu(extensionPath: string, nodePath: string, output: vscode.OutputChannel): Promise<void> {
  const status = gpuProviderStatus(extensionPath);
  if (!status.platformSupported) {
    void vscode.window.showInformationMessage(
      `PruneKit: the CUDA provider is installed this way on Linux x64 only. On ${process.platform}-${process.arch}, "prunekit.device": "auto" takes the GPU through WebGPU (Metal on a Mac, D3D12 on Windows) with nothing to install; CUDA on Windows: see the README, "GPU (CUDA)".`,
    );
    return;
  }
  if (status.missing.length === 0) {
    void vscode.window.showInformationMessage(`PruneKit: onnxruntime's CUDA provider is installed (${status.binDir}). The NVIDIA driver, CUDA 12 and cuDNN 9 must be installed too; set "prunekit.device" to "cuda" or "auto".`);
    return;
  }
  const download = 'Download CUDA Provider';
  const manual = 'Show Manual Steps';
  const choice = await vscode.window.showInformationMessage(`PruneKit: Set Up GPU. ${NEEDS}`, { modal: true, detail: `Missing: ${status.missing.join(', ')} in ${status.binDir}` }, download, manual);
  if (choice === manual) return showManualSteps(status, output, 'Steps to install the CUDA provider by hand:');
  if (choice !== download) return;
  if (!status.installerPresent) return showManualSteps(status, output, `This PruneKit build does not include onnxruntime-node's installer (${status.runtimeDir}/script/install.js).`);

  output.show(true);
  output.appendLine(`[gpu] ONNXRUNTIME_NODE_INSTALL=cuda12 node script/install.js  (in ${status.runtimeDir})`);
  const result = await vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title: 'PruneKit: downloading onnxruntime\'s CUDA provider…' },
    () => installCudaProvider(status, nodePath === '' ? process.execPath : nodePath, (text) => output.append(text)),
  );
  if (result.ok) {
    void vscode.window.showInformationMessage('PruneKit: CUDA provider installed. Set "prunekit.device" to "cuda" (or leave "auto") for the next run.', 'Open Setting').then((c) => {
      if (c) void vscode.commands.executeCommand('workbench.action.openSettings', 'prunekit.device');
    });
    return;
  }
  if (result.offline) return showManualSteps(status, output, 'PruneKit could not reach api.nuget.org (no internet access?). Install the CUDA provider by hand:');
  if (result.incomplete) return showManualSteps(status, output, 'onnxruntime-node\'s installer is missing its own modules in this build. Install the CUDA provider by hand:');
  void vscode.window.showErrorMessage(`PruneKit: the CUDA provider install failed (exit code ${result.exitCode}); see the PruneKit output.`);
}

function showManualSteps(status: ReturnType<typeof gpuProviderStatus>, output: vscode.OutputChannel, why: string): void {
  output.appendLine(`[gpu] ${why}\n${offlineInstructions(status)}`);
  output.show(true);
  void vscode.window.showWarningMessage(`PruneKit: ${why}`, { modal: true, detail: offlineInstructions(status) });
}
